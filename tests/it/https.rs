//! https:// through gix's reqwest + rustls transport: a throw-away CA made
//! with the `openssl` CLI, a TLS-terminating proxy (python3's `ssl` module)
//! in front of the plain smart-HTTP server, everything on 127.0.0.1.
//!
//! Trust comes from `SSL_CERT_FILE`: on Linux the rustls platform verifier
//! gets its roots from rustls-native-certs, which reads `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` *instead of* the system store when either is set (a
//! directory of PEM files works too, hashed names or not). So pointing
//! `SSL_CERT_FILE` at another CA keeps the host's roots out of the test.

use std::time::Duration;

use crate::support::servers::{TestCa, TlsProxy};
use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn history(n: usize) -> Upstream {
    let up = Upstream::new();
    up.commit_rich_tree("base");
    up.commit_many(n - 1, "history");
    up
}

#[test]
fn https_with_a_trusted_ca_publishes() {
    let up = history(3);
    let ca = TestCa::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let s = Scratch::new();
    let out = s
        .sidecar(&tls.url(up.name()))
        .arg("--one-time")
        .env("SSL_CERT_FILE", &ca.ca_pem)
        .run(RUN_TIMEOUT);
    let context = || {
        format!(
            "{}\nrequests: {:#?}\ncgi log:\n{}\ntls proxy log:\n{}",
            describe_output(&out),
            http.request_log(),
            http.cgi_log(),
            tls.log()
        )
    };
    assert!(out.status.success(), "{}", context());
    assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
    assert_tree_matches_commit(&s.link(), &up, &up.head());
    assert_eq!(rev_list_count(&s.link()), 1, "default depth 1 over https");
    assert!(
        tls.handshakes_ok() >= 1 && tls.handshakes_failed() == 0,
        "the fetch must have gone through TLS\n{}",
        context()
    );
    assert!(http.requests() >= 2, "{}", context());
}

#[test]
fn https_with_an_untrusted_certificate_fails_without_publishing() {
    let up = history(2);
    let ca = TestCa::new();
    // Trust store = another throw-away CA: the host's roots are not loaded
    // (SSL_CERT_FILE replaces them), and this CA did not sign the server.
    let unrelated = TestCa::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let s = Scratch::new();
    let out = s
        .sidecar(&tls.url(up.name()))
        .arg("--one-time")
        .env("SSL_CERT_FILE", &unrelated.ca_pem)
        .run(RUN_TIMEOUT);
    let context = || {
        format!(
            "{}\nrequests: {:#?}\ntls proxy log:\n{}",
            describe_output(&out),
            http.request_log(),
            tls.log()
        )
    };
    assert!(!out.status.success(), "{}", context());
    // The cause sits several levels down the error chain; the sync error
    // must carry it, not just a library's wrapper words.
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    let failure = stderr
        .lines()
        .find(|l| l.contains("\"sync failed\""))
        .unwrap_or_default()
        .to_string();
    assert!(
        failure.contains("certificate") || failure.contains("unknownissuer"),
        "the sync error itself must name the certificate problem: {failure}\n{}",
        context()
    );
    assert!(
        failure.contains("http.sslcainfo") && failure.contains("git_ssl_cainfo"),
        "the sync error must say how to trust the CA: {failure}"
    );
    // rustls's own "failed to verify" line is not a second error line.
    assert!(
        !stderr.contains("failed to verify") && !stderr.contains("<unknown>"),
        "only our own lines\n{}",
        context()
    );
    assert!(s.published().is_none(), "{}", context());
    assert!(
        !s.link().exists() && std::fs::symlink_metadata(s.link()).is_err(),
        "nothing may be published\n{}",
        context()
    );
    assert!(
        tls.handshakes_failed() >= 1 && tls.handshakes_ok() == 0,
        "the client must have rejected the handshake\n{}",
        context()
    );
    // The client's alert, as OpenSSL names it: the issuer is unknown (not,
    // say, a name mismatch or a bad signature).
    assert!(
        tls.log().to_lowercase().contains("unknown ca"),
        "the client must reject the certificate for its unknown issuer\n{}",
        context()
    );
    assert_eq!(
        http.requests(),
        0,
        "no HTTP request may pass an untrusted TLS session\n{}",
        context()
    );
}

/// git's environment variables, as pods set them for git-sync: a private
/// CA through `GIT_SSL_CAINFO`, and `GIT_SSL_NO_VERIFY` (warned about).
/// `SSL_CERT_FILE` names an unrelated CA, so only they can make it trusted.
#[test]
fn git_ssl_cainfo_and_git_ssl_no_verify_work_as_in_git() {
    let up = history(2);
    let ca = TestCa::new();
    let unrelated = TestCa::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let ca_pem = ca.ca_pem.to_string_lossy().into_owned();
    for (name, value) in [
        ("GIT_SSL_CAINFO", ca_pem.as_str()),
        ("GIT_SSL_NO_VERIFY", "1"),
    ] {
        let s = Scratch::new();
        let out = s
            .sidecar(&tls.url(up.name()))
            .arg("--one-time")
            .env("SSL_CERT_FILE", &unrelated.ca_pem)
            .env(name, value)
            .run(RUN_TIMEOUT);
        assert!(out.status.success(), "{name}: {}", describe_output(&out));
        assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
        let warned =
            String::from_utf8_lossy(&out.stderr).contains("any server certificate is accepted");
        assert_eq!(
            warned,
            name == "GIT_SSL_NO_VERIFY",
            "{}",
            describe_output(&out)
        );
    }
}

/// A server that offers only TLS 1.2 with RSA key exchange or CBC ciphers
/// (an older nginx's configuration), which rustls does not speak: the
/// error says so and what the server must enable.
#[test]
fn a_server_without_a_common_cipher_is_named_as_such() {
    let up = history(2);
    let ca = TestCa::new();
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start_with_ciphers(http.addr(), &ca.cert_pem, &ca.key_pem, "AES128-SHA");
    let s = Scratch::new();
    let out = s
        .sidecar(&tls.url(up.name()))
        .arg("--one-time")
        .env("SSL_CERT_FILE", &ca.ca_pem)
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("HandshakeFailure") && said.contains("TLS 1.2 with ECDHE key exchange"),
        "{}\ntls proxy log:\n{}",
        describe_output(&out),
        tls.log()
    );
    assert!(s.published().is_none());
    // https:// to a port that speaks plain HTTP.
    let s = Scratch::new();
    let plain = http.url(up.name()).replacen("http://", "https://", 1);
    let out = s.sidecar(&plain).arg("--one-time").run(RUN_TIMEOUT);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("the server does not speak TLS on that port"),
        "{}",
        describe_output(&out)
    );
}

/// `http://` to a port that speaks TLS: nginx answers plain HTTP with a 400
/// ("The plain HTTP request was sent to HTTPS port"), python's `ssl` server
/// closes the connection. Either way the error says the server speaks TLS
/// there and to use https://. A plain server's 400 is not said to be TLS.
#[test]
fn http_to_a_tls_port_says_the_server_speaks_tls() {
    use crate::support::servers::{one_server_conf, Nginx};
    let up = history(2);
    let ca = TestCa::new();
    let speaks_tls = "the server speaks TLS (https) on that port";
    let use_https = "use https:// in --repo";
    let sync = |url: &str| {
        let s = Scratch::new();
        let out = s
            .sidecar(url)
            .arg("--one-time")
            .env("SSL_CERT_FILE", &ca.ca_pem)
            .run(RUN_TIMEOUT);
        assert!(!out.status.success(), "{}", describe_output(&out));
        assert!(s.published().is_none(), "{}", describe_output(&out));
        assert!(
            std::fs::symlink_metadata(s.link()).is_err(),
            "nothing may be published\n{}",
            describe_output(&out)
        );
        (String::from_utf8_lossy(&out.stderr).into_owned(), out)
    };
    // nginx with `listen … ssl`.
    let (cert, key) = (ca.cert_pem.display(), ca.key_pem.display());
    let nginx = Nginx::start_conf(|dir, port| {
        one_server_conf(
            dir,
            &format!(
                "listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; \
                 ssl_certificate_key {key}; location / {{ return 200 \"ok\"; }}"
            ),
        )
    });
    let (said, out) = sync(&format!("http://{}/{}", nginx.addr(), up.name()));
    assert!(
        said.contains(speaks_tls) && said.contains(use_https) && said.contains("400"),
        "{}\nnginx error log:\n{}",
        describe_output(&out),
        nginx.error_log()
    );
    // python's ssl server (TlsProxy), which closes on plain HTTP.
    let http = HttpGit::start(up.base(), HttpOpts::default());
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let plain = tls.url(up.name()).replacen("https://", "http://", 1);
    let (said, out) = sync(&plain);
    assert!(
        said.contains(speaks_tls) && said.contains(use_https),
        "{}\ntls proxy log:\n{}",
        describe_output(&out),
        tls.log()
    );
    assert_eq!(http.requests(), 0, "{}", describe_output(&out));
    // A plain nginx answering 400 for its own reasons: not TLS.
    let plain_400 = Nginx::start_conf(|dir, port| {
        one_server_conf(dir, &format!("listen 127.0.0.1:{port}; return 400;"))
    });
    let (said, out) = sync(&format!("http://{}/{}", plain_400.addr(), up.name()));
    assert!(
        said.contains("400") && !said.contains("speaks TLS") && !said.contains(use_https),
        "{}",
        describe_output(&out)
    );
}

/// git follows a redirect from https to http (with a warning); we refuse
/// it, and say so instead of blaming the URL or the credentials.
#[test]
fn a_redirect_from_https_to_http_is_refused_and_named() {
    use crate::support::http_server::{Answer, Request, TestServer};
    let ca = TestCa::new();
    let plain = TestServer::start(|_, _: &Request| Answer::new(404, ""));
    let plain_base = format!("http://127.0.0.1:{}", plain.port());
    let forge = {
        let plain_base = plain_base.clone();
        TestServer::start(move |_, req: &Request| {
            Answer::new(301, "").header("Location", &format!("{plain_base}{}", req.target))
        })
    };
    let tls = TlsProxy::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], forge.port())),
        &ca.cert_pem,
        &ca.key_pem,
    );
    let s = Scratch::new();
    let out = s
        .sidecar(&tls.url("site.git"))
        .arg("--one-time")
        .env("SSL_CERT_FILE", &ca.ca_pem)
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("from https to {plain_base}/site.git/info/refs"))
            && said.contains("does not follow a redirect from https to plain http")
            && !said.contains("credentials were refused"),
        "{}",
        describe_output(&out)
    );
    assert!(plain.requests().is_empty(), "{}", plain.describe());
}
