//! The other ways to authenticate and reach an http(s) server, against real
//! servers on 127.0.0.1: `--credential` per URL (two servers with different
//! passwords, path prefixes), `--askpass-url` that is slow, trickling,
//! failing, wrong or over https, a bearer token, `http.extraHeader` kept
//! from a submodule's server, a GitHub App (a GitHub-API-shaped token
//! endpoint that verifies the JWT with the app's public key and hands out
//! short-lived tokens, which the git server then demands; one that
//! trickles), proxies (environment and `http.proxy`, through a counting
//! forward proxy), a CA bundle (`http.sslCAInfo`), `--git-config` keys at
//! start-up, and sweeps of what the process writes for each new secret.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::auth::{polling, server, sync_errors, upstream, USER};
use crate::support::client::{self, wait_for_http_address};
use crate::support::forward_proxy::ForwardProxy;
use crate::support::http_server::{Answer, Request, TestServer};
use crate::support::servers::{Squid, TestCa, TlsProxy};
use crate::support::sidecar::{describe_output, Running};
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Distinctive, so that finding it anywhere is no accident.
const SECRET: &str = "Hx4-more-SECRET-2pL";
const OTHER: &str = "Rt7-wrong-PASS-5nB";
/// A token in an askpass URL's query.
const URL_TOKEN: &str = "Qz8-askpass-TOKEN-3kW";
/// The `--sync-timeout` of the askpass trickle test; the failure must come
/// before three times this has passed (as the stall tests allow).
const SHORT_SYNC: Duration = Duration::from_secs(2);
/// The GitHub App trickle test's: reading the body used to get one more
/// full timeout after the headers (2x), so the bound there is 1.5x, and
/// the timeout longer to leave room for a loaded machine.
const GITHUB_SYNC: Duration = Duration::from_secs(4);

/// A smart-HTTP server for `up` that requires the bearer token `SECRET`.
fn bearer_server(up: &Upstream) -> HttpGit {
    HttpGit::start(
        up.base(),
        HttpOpts {
            bearer_token: Some(SECRET.into()),
            ..Default::default()
        },
    )
}

fn one_time(s: &Scratch, url: &str) -> crate::support::sidecar::Sidecar {
    s.sidecar(url).arg("--one-time")
}

/// The two ways a proxy is set: git's `http.proxy` (through
/// `--git-config`) or an environment variable.
const PROXY_SETTINGS: [&str; 2] = ["http.proxy", "HTTP_PROXY"];

/// A [`one_time`] run of `url` with `proxy` set by `setting` (one of
/// [`PROXY_SETTINGS`]), and where its errors say the proxy was set.
fn one_time_through(
    s: &Scratch,
    url: &str,
    setting: &str,
    proxy: &str,
) -> (crate::support::sidecar::Sidecar, &'static str) {
    match setting {
        "http.proxy" => (
            one_time(s, url).arg(format!("--git-config=http.proxy:{proxy}")),
            "(http.proxy)",
        ),
        var => (
            one_time(s, url).env(var, proxy),
            "(the environment's proxy variables)",
        ),
    }
}

/// A [`one_time_through`] run that must fail (`case` names it if not):
/// its stderr, and where its errors say the proxy was set.
fn failing_through(
    s: &Scratch,
    url: &str,
    setting: &str,
    proxy: &str,
    case: &str,
) -> (String, &'static str) {
    let (run, source) = one_time_through(s, url, setting, proxy);
    let out = run.run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{case}: {}", describe_output(&out));
    (String::from_utf8_lossy(&out.stderr).into_owned(), source)
}

fn credential(url: &str, password: &str) -> serde_json::Value {
    serde_json::json!({"url": url, "username": USER, "password": password})
}

/// The value of a metric line `name{labels} value`, 0 when absent.
fn metric(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn get(addr: &str, path: &str) -> String {
    client::get(addr, path)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .text()
}

#[test]
fn per_url_credentials_give_each_server_its_own_password() {
    let (up_a, up_b) = (upstream(), upstream());
    let (a, b) = (server(&up_a, SECRET), server(&up_b, OTHER));
    let both = serde_json::json!([
        credential(&b.url(""), OTHER),
        credential(&a.url(""), SECRET)
    ]);
    for (http, up) in [(&a, &up_a), (&b, &up_b)] {
        let s = Scratch::new();
        let out = one_time(&s, &http.url(up.name()))
            .arg(format!("--credential={both}"))
            .run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(s.published().as_deref(), Some(up.head().as_str()));
        let logs = format!("{}{}", describe_output(&out), http.request_log().join("\n"));
        assert!(!logs.contains(SECRET) && !logs.contains(OTHER), "{logs}");
    }
    // Same host: the entry whose path is the longer prefix wins, whatever the order.
    let s = Scratch::new();
    let prefixed = serde_json::json!([
        credential(&a.url(""), OTHER),
        credential(&a.url(up_a.name()), SECRET),
        credential(&a.url("other/"), OTHER),
    ]);
    let out = one_time(&s, &a.url(up_a.name()))
        .arg(format!("--credential={prefixed}"))
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    // No entry's path matches (`<name>-not` is no prefix on a segment
    // boundary): as in git-sync, whose entries git's credential cache keeps
    // per host, the first entry for the host answers.
    let other_paths = |first: &str, second: &str| {
        serde_json::json!([
            credential(&a.url(&format!("{}-not", up_a.name())), first),
            credential(&a.url("elsewhere/"), second),
        ])
    };
    let s = Scratch::new();
    let out = one_time(&s, &a.url(up_a.name()))
        .arg(format!("--credential={}", other_paths(SECRET, OTHER)))
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let s = Scratch::new();
    let out = one_time(&s, &a.url(up_a.name()))
        .arg(format!("--credential={}", other_paths(OTHER, SECRET)))
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    assert!(
        errors.iter().any(|e| e.contains("authentication failed")),
        "{errors:?}"
    );
    // Another host is never answered.
    let s = Scratch::new();
    let out = one_time(&s, &a.url(up_a.name()))
        .arg(format!("--credential={}", credential(&b.url(""), SECRET)))
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("asks for credentials and none are configured")),
        "{errors:?}"
    );
}

#[test]
fn askpass_that_is_slow_then_failing_then_wrong_fails_those_syncs_and_recovers() {
    let up = upstream();
    let http = server(&up, SECRET);
    let answer = |password: &str| format!("username={USER}\npassword={password}\n");
    let (right, wrong) = (answer(SECRET), answer(OTHER));
    let askpass = TestServer::start(move |i, _: &Request| match i {
        // Beyond the 5 s askpass timeout.
        0 => Answer {
            delay: Duration::from_secs(7),
            ..Answer::new(200, right.clone())
        },
        1 => Answer::new(500, "flaky"),
        2 => Answer::new(200, wrong.clone()),
        _ => Answer::new(200, right.clone()),
    });
    let s = Scratch::new();
    let run = polling(&s, &http.url(up.name()))
        .arg(format!("--askpass-url={}", askpass.url("/creds?k=v")))
        .args(["--http-bind", "127.0.0.1:0", "--http-metrics"])
        .spawn();
    let addr = wait_for_http_address(&run);
    run.wait_for_link_hash(&s.link(), &up.head());
    let errors = sync_errors(&run.stderr());
    // Shown without the query, which may hold a token.
    let prefix = format!("askpass URL {}", askpass.url("/creds"));
    assert!(errors.len() >= 3, "{errors:?}\n{}", run.logs());
    assert!(
        errors[0].starts_with(&prefix) && errors[0].contains("timed out"),
        "{errors:?}"
    );
    assert_eq!(errors[1], format!("{prefix} answered 500, not 200"));
    assert!(
        errors[2].contains("authentication failed") && errors[2].contains("rejected"),
        "{errors:?}"
    );
    let metrics = get(&addr, "/metrics");
    assert_eq!(
        metric(&metrics, "git_sync_askpass_calls{status=\"error\"}"),
        2.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "git_sync_askpass_calls{status=\"success\"}") >= 2.0,
        "{metrics}"
    );
    assert!(askpass.requests().iter().all(|r| r.method == "GET"));
    let everything = format!(
        "{}\n{}\n{metrics}\n{}",
        run.stdout(),
        run.stderr(),
        get(&addr, "/status")
    );
    assert_no_secret(
        &[("stdout, stderr, /metrics and /status", &everything)],
        &[SECRET, OTHER],
    );
}

/// A `--one-time` run against `url` with `--sync-timeout` `sync` and
/// `extra` arguments; returns its output and when it ended.
fn short_one_time(
    s: &Scratch,
    url: &str,
    sync: Duration,
    extra: &[String],
) -> (std::process::Output, Instant) {
    let out = one_time(s, url)
        .arg(format!("--sync-timeout={}s", sync.as_secs()))
        .args(extra)
        .run(RUN_TIMEOUT);
    (out, Instant::now())
}

/// A TestServer that records when each request came, for timing bounds.
fn timed_server(
    answer: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (TestServer, Arc<Mutex<Vec<Instant>>>) {
    let asked: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = asked.clone();
    let server = TestServer::start(move |i, _: &Request| {
        seen.lock().expect("lock").push(Instant::now());
        answer(i)
    });
    (server, asked)
}

/// Fails unless the run failed with an error containing `expected`, less
/// than `bound` after the request.
fn assert_failed_in_time(
    out: &std::process::Output,
    took: Duration,
    bound: Duration,
    expected: &str,
) {
    assert!(!out.status.success(), "{}", describe_output(out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "want {expected:?} in {errors:?}"
    );
    assert!(
        took < bound,
        "failed {took:?} after the request, allowed {bound:?}"
    );
}

#[test]
fn askpass_answer_that_trickles_fails_the_sync_by_its_deadline_and_keeps_the_content() {
    let up = upstream();
    let first = up.head();
    let http = server(&up, SECRET);
    let right = format!("username={USER}\npassword={SECRET}\n");
    // 120 bytes at 400 ms each: 48 s to read to the end, each read quick.
    let slow = format!("{right}{}\n", "x".repeat(120 - right.len() - 1));
    let (askpass, asked) = timed_server(move |i| match i {
        0 => Answer::new(200, right.clone()),
        1 => Answer {
            trickle: Some(Duration::from_millis(400)),
            ..Answer::new(200, slow.clone())
        },
        _ => Answer::new(200, "x".repeat(100 * 1024)),
    });
    let ask = [format!("--askpass-url={}", askpass.url("/creds"))];
    let s = Scratch::new();
    let (out, _) = short_one_time(&s, &http.url(up.name()), SHORT_SYNC, &ask);
    assert!(out.status.success(), "{}", describe_output(&out));
    up.commit_file("index.html", "v2\n", "second");

    let (out, ended) = short_one_time(&s, &http.url(up.name()), SHORT_SYNC, &ask);
    let took = ended.duration_since(asked.lock().expect("lock")[1]);
    let expected = format!(
        "askpass URL {}: reading the answer timed out",
        askpass.url("/creds")
    );
    assert_failed_in_time(&out, took, 3 * SHORT_SYNC, &expected);
    assert_eq!(s.published().as_deref(), Some(first.as_str()));
    assert_tree_matches_commit(&s.link(), &up, &first);
    // An answer announced larger than 64 KiB is refused before reading it.
    let (out, _) = short_one_time(&s, &http.url(up.name()), SHORT_SYNC, &ask);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    assert!(
        errors.iter().any(|e| e.contains("larger than 65536 bytes")),
        "{errors:?}"
    );
    assert_eq!(s.published().as_deref(), Some(first.as_str()));
}

#[test]
fn github_app_token_answer_that_trickles_fails_the_sync_by_its_deadline() {
    let up = upstream();
    let git = server(&up, SECRET);
    let s = Scratch::new();
    let (key_file, _) = app_key(s.dir.path());
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let body = serde_json::json!({"token": SECRET, "expires_at": humantime::format_rfc3339_seconds(expires).to_string()});
    // The headers late in the budget, then the body a byte at a time.
    let (api, asked) = timed_server(move |_| Answer {
        delay: GITHUB_SYNC * 3 / 4,
        trickle: Some(Duration::from_millis(400)),
        ..Answer::new(201, body.to_string())
    });
    let (out, ended) = short_one_time(
        &s,
        &git.url(up.name()),
        GITHUB_SYNC,
        &[
            format!("--github-base-url={}", api.url("")),
            "--github-app-application-id=7".into(),
            "--github-app-installation-id=42".into(),
            format!("--github-app-private-key-file={}", key_file.display()),
        ],
    );
    let took = ended.duration_since(asked.lock().expect("lock")[0]);
    let bound = GITHUB_SYNC * 3 / 2;
    assert_failed_in_time(&out, took, bound, "reading the answer timed out");
    assert!(s.published().is_none());
}

#[test]
fn askpass_over_https_trusts_the_ca_from_http_ssl_ca_info() {
    let up = upstream();
    let http = server(&up, SECRET);
    let askpass = TestServer::start(|_, _: &Request| {
        Answer::new(200, format!("username={USER}\npassword={SECRET}\n"))
    });
    let ca = TestCa::new();
    let tls = TlsProxy::start(askpass.addr(), &ca.cert_pem, &ca.key_pem);
    let ask = format!("--askpass-url={}", tls.url("creds"));
    let s = Scratch::new();
    let out = one_time(&s, &http.url(up.name()))
        .arg(&ask)
        .arg(format!(
            "--git-config=http.sslCAInfo:{}",
            ca.ca_pem.display()
        ))
        .run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe_output(&out),
        tls.log()
    );
    assert_eq!(s.published().as_deref(), Some(up.head().as_str()));
    // Without the bundle the askpass server's certificate is not trusted.
    let s = Scratch::new();
    let out = one_time(&s, &http.url(up.name()))
        .arg(&ask)
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    let prefix = format!("askpass URL {}", tls.url("creds"));
    assert!(errors.iter().any(|e| e.starts_with(&prefix)), "{errors:?}");
    assert!(tls.handshakes_ok() >= 1 && tls.handshakes_failed() >= 1);
}

/// git sends `http.extraHeader` everywhere; here it only goes to `--repo`'s
/// server, so a `.gitmodules` naming another server cannot collect it.
#[test]
fn extra_header_goes_to_the_repo_server_and_not_to_a_submodule_elsewhere() {
    let lib = Upstream::named("lib");
    let l1 = lib.commit_file("lib.txt", "one\n", "lib one");
    let lib_http = HttpGit::start(lib.base(), HttpOpts::default());
    let site = Upstream::named("site");
    site.commit_file("index.html", "hi\n", "page");
    let modules = gitmodules(&[("lib", "lib", &lib_http.url(lib.name()))]);
    let head = site.commit_gitlinks(&modules, &[("lib", &l1)], "add lib");
    let site_http = bearer_server(&site);
    let s = Scratch::new();
    let out = one_time(&s, &site_http.url(site.name()))
        .arg(format!(
            "--git-config=http.extraHeader:Authorization: Bearer {SECRET}"
        ))
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(s.published().as_deref(), Some(head.as_str()));
    assert_tree_matches_commit(&s.link().join("lib"), &lib, &l1);
    assert!(site_http
        .authorizations()
        .contains(&format!("Bearer {SECRET}")));
    assert!(lib_http.requests() > 0, "the submodule was not fetched");
    assert_eq!(lib_http.authorizations(), Vec::<String>::new());
}

#[test]
fn bearer_token_is_sent_as_a_header_to_a_server_that_demands_it() {
    let up = upstream();
    let http = bearer_server(&up);
    let s = Scratch::new();
    let out = one_time(&s, &http.url(up.name()))
        .env("GITSYNC_BEARER_TOKEN", SECRET)
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(http.unauthorized(), 0, "sent up front, no 401 round trip");
    let s = Scratch::new();
    let file = s.dir.path().join("token");
    fs::write(&file, format!("{SECRET}\n")).expect("token file");
    let out = one_time(&s, &http.url(up.name()))
        .arg(format!("--bearer-token-file={}", file.display()))
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    for (env, expected) in [
        (Some(OTHER), "rejected the credentials"),
        (None, "none are configured"),
    ] {
        let s = Scratch::new();
        let mut sidecar = one_time(&s, &http.url(up.name()));
        if let Some(token) = env {
            sidecar = sidecar.env("GITSYNC_BEARER_TOKEN", token);
        }
        let out = sidecar.run(RUN_TIMEOUT);
        assert!(!out.status.success(), "{}", describe_output(&out));
        let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
        assert!(errors.iter().any(|e| e.contains(expected)), "{errors:?}");
    }
}

/// `openssl` makes the app's key pair (PKCS#8 private key, PKCS#1 public DER).
fn app_key(dir: &Path) -> (PathBuf, Vec<u8>) {
    let key = dir.join("app.pem");
    let public = dir.join("app.pub.der");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed (Debian: apt-get install openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (k, p) = (key.to_string_lossy(), public.to_string_lossy());
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &k,
    ]);
    run(&[
        "rsa",
        "-in",
        &k,
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        &p,
    ]);
    (key.clone(), fs::read(&public).expect("public key"))
}

/// Checks a GitHub App JWT as GitHub would: RS256 signature by the app's
/// key, `iss` = the app ID, `iat` in the past, at most 10 minutes to `exp`.
fn jwt_is_valid(req: &Request, public_der: &[u8]) -> Result<(), String> {
    use aws_lc_rs::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let jwt = req
        .header("Authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or("no bearer JWT")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not three parts".into());
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_der)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "bad signature")?;
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap_or(u64::MAX),
        claims["exp"].as_u64().unwrap_or(0),
    );
    let ok = header["alg"] == "RS256"
        && claims["iss"] == 7
        && iat <= now
        && exp > now
        && exp <= now + 600;
    ok.then_some(())
        .ok_or_else(|| format!("bad JWT: {header} {claims}"))
}

#[test]
fn github_app_token_is_minted_used_and_refreshed_before_expiry() {
    let up = upstream();
    let git = Arc::new(HttpGit::start(
        up.base(),
        HttpOpts {
            basic_auth: Some(("x-access-token".into(), "none-minted-yet".into())),
            ..Default::default()
        },
    ));
    let s = Scratch::new();
    let (key_file, public_der) = app_key(s.dir.path());
    let minted: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let (git2, minted2, refused2) = (git.clone(), minted.clone(), refused.clone());
    let api = TestServer::start(move |i, req| {
        let well_formed = req.method == "POST"
            && req.target == "/app/installations/42/access_tokens"
            && req.header("Accept") == Some("application/vnd.github+json");
        if let Err(e) = jwt_is_valid(req, &public_der)
            .and(well_formed.then_some(()).ok_or_else(|| format!("{req:?}")))
        {
            refused2.lock().expect("lock").push(e);
            return Answer::new(
                401,
                r#"{"message":"A JSON web token could not be decoded"}"#,
            );
        }
        let token = format!("ghs_test{i}_Tk9");
        git2.set_basic_auth("x-access-token", &token);
        minted2.lock().expect("lock").push(token.clone());
        // 3 s more than the 5-minute refresh margin: due again 3 s from now.
        let expires = SystemTime::now() + Duration::from_secs(5 * 60 + 3);
        let body = serde_json::json!({"token": token, "expires_at": humantime::format_rfc3339_seconds(expires).to_string()});
        Answer::new(201, body.to_string())
    });
    let run = polling(&s, &git.url(up.name()))
        .arg(format!("--github-base-url={}", api.url("/")))
        .args([
            "--github-app-application-id=7",
            "--github-app-installation-id=42",
        ])
        .arg(format!(
            "--github-app-private-key-file={}",
            key_file.display()
        ))
        .args(["--http-bind", "127.0.0.1:0", "--http-metrics"])
        .spawn();
    let addr = wait_for_http_address(&run);
    run.wait_for_link_hash(&s.link(), &up.head());
    run.wait_until(DEADLINE, "a second token (refresh)", || {
        minted.lock().expect("lock").len() >= 2
    });
    // The git server now only takes the newest token.
    let second = up.commit_file("index.html", "v2\n", "second");
    run.wait_for_link_hash(&s.link(), &second);
    assert!(
        refused.lock().expect("lock").is_empty(),
        "{:?}",
        refused.lock()
    );
    let metrics = get(&addr, "/metrics");
    let refreshes = metric(
        &metrics,
        "git_sync_refresh_github_app_token_count{status=\"success\"}",
    );
    assert!(refreshes >= 2.0, "{metrics}");
    let mut secrets = minted.lock().expect("lock").clone();
    let pem = fs::read_to_string(&key_file).expect("key");
    secrets.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string),
    );
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let everything = format!(
        "{}\n{}\n{metrics}\n{}",
        run.stdout(),
        run.stderr(),
        get(&addr, "/status")
    );
    assert_no_secret(
        &[("stdout, stderr, /metrics and /status", &everything)],
        &secrets,
    );
}

#[test]
fn proxy_environment_variables_and_http_proxy_carry_the_traffic() {
    let up = upstream();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let url = http.url(up.name());
    // An environment variable, or (None) --git-config http.proxy.
    for name in [
        Some("HTTP_PROXY"),
        Some("http_proxy"),
        Some("ALL_PROXY"),
        None,
    ] {
        let proxy = ForwardProxy::start();
        let s = Scratch::new();
        let sidecar = match name {
            Some(var) => one_time(&s, &url).env(var, proxy.url()),
            None => one_time(&s, &url).arg(format!("--git-config=http.proxy:{}", proxy.url())),
        };
        let name = name.unwrap_or("http.proxy");
        let out = sidecar.run(RUN_TIMEOUT);
        assert!(out.status.success(), "{name}: {}", describe_output(&out));
        assert!(
            proxy.forwarded() >= 2,
            "{name}: {} requests went through the proxy",
            proxy.forwarded()
        );
    }
    // NO_PROXY exempts the host, from the environment proxy and from http.proxy.
    let proxy = ForwardProxy::start();
    let s = Scratch::new();
    let out = one_time(&s, &url)
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "127.0.0.1")
        .arg(format!("--git-config=http.proxy:{}", proxy.url()))
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(proxy.forwarded(), 0);
    // As in curl, and so git: `NO_PROXY=*` exempts every host, IP addresses
    // too, and an empty http.proxy turns off the environment's proxy.
    for (no_proxy, http_proxy) in [("*", proxy.url()), ("", String::new())] {
        let s = Scratch::new();
        let mut run = one_time(&s, &url)
            .env("HTTP_PROXY", proxy.url())
            .arg(format!("--git-config=http.proxy:{http_proxy}"));
        if !no_proxy.is_empty() {
            run = run.env("NO_PROXY", no_proxy);
        }
        let out = run.run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(
            proxy.forwarded(),
            0,
            "NO_PROXY={no_proxy:?} http.proxy={http_proxy:?}"
        );
    }
}

/// With the proxy down, the failure names the proxy (and where it was
/// set), not only the git server, which users would otherwise debug; the
/// proxy's password stays out of it. As git says "Failed to connect to
/// <proxy> port <n>".
#[test]
fn a_proxy_that_is_down_is_named_in_the_error() {
    let up = upstream();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let url = http.url(up.name());
    let port = free_port();
    let down = format!("http://someone:Pr0xy-PW-7q@127.0.0.1:{port}");
    for setting in PROXY_SETTINGS {
        let s = Scratch::new();
        let (err, source) = failing_through(&s, &url, setting, &down, setting);
        let named = format!("through the proxy http://127.0.0.1:{port} {source}");
        assert!(err.contains(&named), "{setting}: {err}");
        assert!(
            !err.contains("Pr0xy-PW-7q"),
            "{setting}: the proxy's password: {err}"
        );
    }
    // Exempted by NO_PROXY, the same repository syncs: the proxy is not
    // blamed where it is not used.
    let s = Scratch::new();
    let out = one_time(&s, &url)
        .env("HTTP_PROXY", &down)
        .env("NO_PROXY", "127.0.0.1")
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
}

/// An http:// repository through a proxy that is up but answers the
/// request itself: 502 when it cannot reach the git server (here: nothing
/// listens there), 407 when it wants credentials it was not given. The
/// error names the proxy and where it was set, not only the git server's
/// URL; the proxy's password stays out of it. With the right password the
/// same proxy carries the sync.
#[test]
fn a_proxy_answering_502_or_407_is_named_in_the_error() {
    let up = upstream();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let url = http.url(up.name());
    let nowhere = format!("http://127.0.0.1:{}/site.git", free_port());
    let password = "Pr0xy-PW-8z";
    let open = ForwardProxy::start();
    let guarded = ForwardProxy::requiring("someone", password);
    let with_user = |proxy: &ForwardProxy, password: &str| {
        proxy
            .url()
            .replace("http://", &format!("http://someone:{password}@"))
    };
    let cases = [
        (
            &open,
            &nowhere,
            "502 Bad Gateway",
            "may have failed to reach the git server",
        ),
        (
            &guarded,
            &url,
            "407 Proxy Authentication Required",
            "user and password",
        ),
    ];
    for ((proxy, repo, status, why), setting) in cases
        .into_iter()
        .flat_map(|case| PROXY_SETTINGS.map(|setting| (case, setting)))
    {
        let s = Scratch::new();
        let case = format!("{setting} {status}");
        let (err, source) = failing_through(&s, repo, setting, &with_user(proxy, OTHER), &case);
        let named = format!(
            "through the proxy {} {source}: the proxy answered {status}: ",
            proxy.url()
        );
        assert!(err.contains(&named), "{setting} {status}: {err}");
        assert!(err.contains(why), "{setting} {status}: {err}");
        assert!(!err.contains("REDACTED"), "{setting} {status}: {err}");
        assert!(
            !err.contains(OTHER) && !err.contains("someone"),
            "{setting} {status}: the proxy's user or password: {err}"
        );
    }
    let s = Scratch::new();
    let out = one_time(&s, &url)
        .arg(format!(
            "--git-config=http.proxy:{}",
            with_user(&guarded, password)
        ))
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(guarded.forwarded() >= 2, "{}", guarded.forwarded());
}

/// The git server goes away between the listing, which went through the
/// proxy (protocol v2 over http: the advertisement, then `ls-refs`), and
/// the pack request, which the proxy answers 502 itself: that error names
/// the proxy too, and nothing is published.
#[test]
fn a_proxy_answering_502_to_the_pack_request_is_named_in_the_error() {
    let up = upstream();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let url = http.url(up.name());
    for setting in PROXY_SETTINGS {
        let proxy = ForwardProxy::losing_the_server_after(2);
        let s = Scratch::new();
        let (err, source) = failing_through(&s, &url, setting, &proxy.url(), setting);
        assert_eq!(proxy.forwarded(), 2, "{setting}: the listing went through");
        let named = format!(
            "through the proxy {} {source}: the proxy answered 502 Bad Gateway: ",
            proxy.url()
        );
        assert!(err.contains(&named), "{setting}: {err}");
        assert!(s.published().is_none(), "{setting}");
    }
}

/// A SOCKS proxy (OpenSSH's `ssh -D`, a common way to reach a private
/// network), through `ALL_PROXY` and `http.proxy`, with local (`socks5`)
/// and remote (`socks5h`) name resolution, as git takes it through curl.
/// Once the tunnel is gone the same runs fail: the traffic went through it.
#[test]
fn a_socks_proxy_carries_the_traffic() {
    use crate::support::sshd::{self, keygen, Sshd};
    let up = upstream();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let url = http.url(up.name());
    let keys = crate::support::tempdir("socks-keys");
    let key = keygen(keys.path(), "id", "ed25519", "");
    let sshd = Sshd::start(&[&key]);
    let port = free_port();
    let mut tunnel = std::process::Command::new("ssh")
        .args(["-N", "-D", &format!("127.0.0.1:{port}"), "-i"])
        .arg(&key.path)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-p", &sshd.port().to_string()])
        .arg(format!("{}@{}", sshd::user(), sshd.host()))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh (apt-get install openssh-client)");
    let listening = poll_until(DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        listening,
        "ssh -D did not listen\nsshd log:\n{}",
        sshd.log()
    );
    let runs = |s: &Scratch| {
        [
            one_time(s, &url).env("ALL_PROXY", format!("socks5://127.0.0.1:{port}")),
            one_time(s, &url).arg(format!(
                "--git-config=http.proxy:socks5h://127.0.0.1:{port}"
            )),
        ]
    };
    for run in runs(&Scratch::new()) {
        let out = run.run(RUN_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let _ = tunnel.kill();
    let _ = tunnel.wait();
    for run in runs(&Scratch::new()) {
        let out = run.run(RUN_TIMEOUT);
        assert!(!out.status.success(), "{}", describe_output(&out));
    }
}

#[test]
fn https_through_a_connect_proxy_trusting_the_ca_from_http_ssl_ca_info() {
    let up = upstream();
    let ca = TestCa::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let proxy = ForwardProxy::start();
    let s = Scratch::new();
    let out = one_time(&s, &tls.url(up.name()))
        .arg(format!(
            "--git-config=http.sslCAInfo:{}",
            ca.ca_pem.display()
        ))
        .env("HTTPS_PROXY", proxy.url())
        .run(RUN_TIMEOUT);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe_output(&out),
        tls.log()
    );
    assert!(proxy.connects() >= 1 && tls.handshakes_ok() >= 1);
    // Without the bundle the certificate is not trusted...
    let s = Scratch::new();
    let out = one_time(&s, &tls.url(up.name())).run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    // ...unless checking is turned off (warned about).
    let s = Scratch::new();
    let out = one_time(&s, &tls.url(up.name()))
        .arg("--git-config=http.sslVerify:false")
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("any server certificate is accepted"));
}

/// An https:// repository through squid with Debian's configuration,
/// whose rules allow CONNECT to port 443 only (this git server listens
/// elsewhere, as internal ones often do): squid refuses the tunnel with
/// 403, and the error says so and why, where it said only "tunnel error:
/// unsuccessful" and to check that the proxy is up (probe-14 F4). curl
/// and git say "CONNECT tunnel failed, response 403".
#[test]
fn squid_refusing_the_tunnel_is_named_with_its_answer() {
    let up = upstream();
    let ca = TestCa::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let squid = Squid::start();
    let s = Scratch::new();
    let (err, source) =
        failing_through(&s, &tls.url(up.name()), "http.proxy", &squid.url(), "squid");
    let target = format!("127.0.0.1:{}", tls.port());
    let expected = format!(
        "through the proxy {} {source}: asked again, the proxy answered CONNECT {target} with \
         403 Forbidden: its rules refuse a tunnel there",
        squid.url()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(!err.contains("check that the proxy is up"), "{err}");
    let log = squid.access_log();
    assert!(
        log.contains("TCP_DENIED/403") && log.contains(&format!("CONNECT {target}")),
        "{log}"
    );
    assert_eq!(tls.handshakes_ok(), 0, "squid let nothing through");
}

#[test]
fn git_config_keys_are_used_named_or_refused_at_start_up() {
    let up = upstream();
    let s = Scratch::new();
    let out = one_time(&s, &up.file_url())
        .arg("--git-config=safe.directory:*,\"protocol.file.allow\":always,core_editor:vi,http.sslCAInfo:/no/ca.pem")
        .run(RUN_TIMEOUT);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"core_editor\" is not a valid git key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot read the CA bundle \"/no/ca.pem\""),
        "{stderr}"
    );
    assert!(s.published().is_none());
    let out = one_time(&s, &up.file_url())
        .arg("--git-config=safe.directory:*,protocol.file.allow:always,core.editor:vi")
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no effect inside git-sidecar")
            && stderr.contains("safe.directory, protocol.file.allow, core.editor"),
        "{stderr}"
    );
}

/// Everything a failing-then-working run writes (logs, error file,
/// /status, /metrics, the exechook's environment) is free of `secrets`.
fn sweep(
    s: &Scratch,
    sidecar: crate::support::sidecar::Sidecar,
    fix: impl FnOnce(),
    head: &str,
    secrets: &[&str],
) {
    let error_file = s.error_file();
    let hook_env = s.dir.path().join("hook-env");
    let run: Running = sidecar
        .args(["--http-bind", "127.0.0.1:0", "--http-metrics", "-v", "9"])
        .arg(format!("--error-file={}", error_file.display()))
        .args(["--exechook-command=/bin/sh", "--exechook-arg=-c"])
        .arg(format!("--exechook-arg=env > {}", hook_env.display()))
        .spawn();
    let addr = wait_for_http_address(&run);
    run.wait_until(DEADLINE, "a failed sync in the error file", || {
        error_file_has_err(&error_file)
    });
    let failed = [
        fs::read_to_string(&error_file).unwrap_or_default(),
        get(&addr, "/status"),
        get(&addr, "/metrics"),
    ];
    fix();
    run.wait_for_link_hash(&s.link(), head);
    run.wait_until(DEADLINE, "the exechook's environment dump", || {
        fs::read_to_string(&hook_env).is_ok_and(|e| e.contains("GITSYNC_HASH="))
    });
    let hook = fs::read_to_string(&hook_env).expect("hook env");
    let (status, metrics) = (get(&addr, "/status"), get(&addr, "/metrics"));
    let logs = format!("{}\n{}", run.stdout(), run.stderr());
    assert_no_secret(
        &[
            ("stdout and stderr", &logs),
            ("error file", &failed[0]),
            ("/status (failing)", &failed[1]),
            ("/metrics (failing)", &failed[2]),
            ("/status", &status),
            ("/metrics", &metrics),
            ("exechook environment", &hook),
        ],
        secrets,
    );
}

#[test]
fn credential_askpass_and_bearer_secrets_appear_nowhere_the_process_writes() {
    let up = upstream();
    // --credential: the server first wants another password.
    let http = server(&up, OTHER);
    let s = Scratch::new();
    // From the environment, which the hook must not inherit.
    let sidecar = polling(&s, &http.url(up.name())).env(
        "GITSYNC_CREDENTIAL",
        credential(&http.url(""), SECRET).to_string(),
    );
    sweep(
        &s,
        sidecar,
        || http.set_basic_auth(USER, SECRET),
        &up.head(),
        &[SECRET],
    );
    // --askpass-url: same, the password comes from the endpoint; its URL
    // (from the environment) has a token in the query, and the first call
    // fails, so that the URL shows up in an error.
    let http = server(&up, OTHER);
    let askpass = TestServer::start(|i, _: &Request| match i {
        0 => Answer::new(500, "not yet"),
        _ => Answer::new(200, format!("username={USER}\npassword={SECRET}\n")),
    });
    let s = Scratch::new();
    let sidecar = polling(&s, &http.url(up.name())).env(
        "GITSYNC_ASKPASS_URL",
        askpass.url(&format!("/creds?token={URL_TOKEN}")),
    );
    sweep(
        &s,
        sidecar,
        || http.set_basic_auth(USER, SECRET),
        &up.head(),
        &[SECRET, URL_TOKEN],
    );
    assert!(askpass.requests()[0].target.contains(URL_TOKEN));
    // Bearer: accepted at once; the first syncs fail for a missing branch.
    let http = bearer_server(&up);
    let s = Scratch::new();
    let sidecar = polling(&s, &http.url(up.name()))
        .arg("--ref=later")
        .env("GITSYNC_BEARER_TOKEN", SECRET);
    sweep(&s, sidecar, || up.branch("later"), &up.head(), &[SECRET]);
}

/// Fails naming the place where a secret, or its basic-auth encoding, shows up.
fn assert_no_secret(places: &[(&str, &str)], secrets: &[&str]) {
    for secret in secrets {
        let forms = [
            secret.to_string(),
            crate::support::base64(format!("{USER}:{secret}").as_bytes()),
            crate::support::base64(format!("x-access-token:{secret}").as_bytes()),
        ];
        for (place, text) in places {
            assert!(!text.is_empty(), "{place} is empty: nothing was checked");
            for form in &forms {
                assert!(
                    !text.contains(form.as_str()),
                    "{form:?} found in {place}:\n{text}"
                );
            }
        }
    }
}
