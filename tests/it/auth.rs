//! HTTP(S) credentials against a real smart-HTTP server (`git http-backend`
//! behind a basic-auth check, optionally behind TLS), all on 127.0.0.1:
//! `--username` with `GITSYNC_PASSWORD` or `--password-file` (rotated while
//! running), credentials in the URL, wrong passwords, git-sync's validation
//! rules, and a sweep of everything the process writes for the secret.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::client::{self, wait_for_http_address};
use crate::support::secret_volume::SecretVolume;
use crate::support::servers::{TestCa, TlsProxy};
use crate::support::sidecar::describe_output;
use crate::support::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const USER: &str = "alice";
/// Distinctive, so that finding it anywhere is no accident.
const SECRET: &str = "Zq8-auth-SECRET-7vK";
const OTHER: &str = "Wm3-other-PASS-9xQ";

pub(crate) fn upstream() -> Upstream {
    let up = Upstream::new();
    up.commit_file("index.html", "v1\n", "first");
    up
}

/// A smart-HTTP server for `up` that requires `USER` / `password`.
pub(crate) fn server(up: &Upstream, password: &str) -> HttpGit {
    HttpGit::start(
        up.base(),
        HttpOpts {
            basic_auth: Some((USER.into(), password.into())),
            ..Default::default()
        },
    )
}

/// Writes `content` to `<scratch>/<name>` (outside root) and returns the path.
fn write_file(s: &Scratch, name: &str, content: &str) -> PathBuf {
    let path = s.dir.path().join(name);
    fs::write(&path, content).expect("writing a test file");
    path
}

/// The `error` field of every "sync failed" log line.
pub(crate) fn sync_errors(stderr: &str) -> Vec<String> {
    log_lines(stderr)
        .filter(|v| v["msg"] == "sync failed")
        .filter_map(|v| v["error"].as_str().map(str::to_string))
        .collect()
}

/// A long-running sidecar polling every 200ms, retrying forever.
pub(crate) fn polling(s: &Scratch, url: &str) -> Sidecar {
    s.sidecar(url).args(["--period=200ms", "--max-failures=-1"])
}

#[test]
fn gitsync_password_from_the_environment_publishes() {
    let up = upstream();
    let http = server(&up, SECRET);
    let s = Scratch::new();
    let out = s
        .sidecar(&http.url(up.name()))
        .args(["--username", USER, "--one-time"])
        .env("GITSYNC_PASSWORD", SECRET)
        .run(RUN_TIMEOUT);
    let context = || {
        format!(
            "{}\nrequests: {:#?}",
            describe_output(&out),
            http.request_log()
        )
    };
    assert!(out.status.success(), "{}", context());
    assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
    // The server asked (401) and then got the credentials.
    assert!(http.unauthorized() >= 1, "{}", context());
    assert!(
        http.request_log().iter().any(|l| l.contains(" 200 ")),
        "{}",
        context()
    );
}

#[test]
fn wrong_password_fails_as_authentication_failed_and_keeps_the_old_content() {
    let up = upstream();
    let http = server(&up, SECRET);
    let s = Scratch::new();
    let run = |password: &str| {
        s.sidecar(&http.url(up.name()))
            .args(["--username", USER, "--one-time"])
            .env("GITSYNC_PASSWORD", password)
            .run(RUN_TIMEOUT)
    };
    let first = up.head();
    let out = run(SECRET);
    assert!(out.status.success(), "{}", describe_output(&out));
    up.commit_file("index.html", "v2\n", "second");

    let out = run(OTHER);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("authentication failed") && e.contains("rejected the credentials")),
        "the sync error must say that authentication failed: {errors:?}\n{}",
        describe_output(&out)
    );
    assert_eq!(s.published().as_deref(), Some(first.as_str()));
    assert_eq!(
        fs::read_to_string(s.link().join("index.html")).expect("published file"),
        "v1\n"
    );
}

#[test]
fn no_credentials_fail_with_a_hint_instead_of_asking_anyone() {
    let up = upstream();
    let http = server(&up, SECRET);
    let s = Scratch::new();
    // Credential helpers and askpass programs that would answer correctly and
    // leave a mark: gix must not consult any of them. (Two guards make sure:
    // the repository is opened isolated from git config and the environment,
    // and our credential callback replaces gix's helper cascade.)
    let mark = s.dir.path().join("asked");
    let helper = write_file(
        &s,
        "helper.sh",
        &format!(
            "#!/bin/sh\ntouch {mark}\necho username={USER}\necho password={SECRET}\n",
            mark = mark.display()
        ),
    );
    make_executable(&helper);
    let home = s.dir.path().join("home");
    fs::create_dir_all(&home).expect("home");
    fs::write(
        home.join(".gitconfig"),
        format!("[credential]\n\thelper = {}\n", helper.display()),
    )
    .expect(".gitconfig");
    let out = s
        .sidecar(&http.url(up.name()))
        .arg("--one-time")
        .env("HOME", &home)
        .env("GIT_ASKPASS", &helper)
        .env("SSH_ASKPASS", &helper)
        .run(RUN_TIMEOUT);
    assert!(!out.status.success(), "{}", describe_output(&out));
    let errors = sync_errors(&String::from_utf8_lossy(&out.stderr));
    assert!(
        errors.iter().any(|e| e.contains("authentication failed")
            && e.contains("none are configured")
            && e.contains("--password-file")),
        "{errors:?}\n{}",
        describe_output(&out)
    );
    assert!(!mark.exists(), "a credential helper or askpass program ran");
    assert!(s.published().is_none());
}

#[test]
fn password_file_rotation_is_picked_up_by_the_next_sync() {
    let up = upstream();
    let http = server(&up, SECRET);
    let s = Scratch::new();
    let token = write_file(&s, "token", &format!("{SECRET}\n"));
    let run = polling(&s, &http.url(up.name()))
        .args(["--username", USER, "--password-file"])
        .arg(&token)
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());
    let first = up.head();

    // The server's password changes before the file does: syncs fail, the
    // old content stays.
    http.set_basic_auth(USER, OTHER);
    let second = up.commit_file("index.html", "v2\n", "second");
    let rejected = http.unauthorized();
    run.wait_until(DEADLINE, "two syncs rejected by the server", || {
        sync_errors(&run.stderr())
            .iter()
            .filter(|e| e.contains("authentication failed"))
            .count()
            >= 2
    });
    assert!(http.unauthorized() > rejected);
    assert_eq!(
        s.published().as_deref(),
        Some(first.as_str()),
        "{}",
        run.logs()
    );

    // The rotated token lands in the file: the next sync uses it.
    fs::write(&token, format!("{OTHER}\n")).expect("rotating the token");
    run.wait_for_link_hash(&s.link(), &second);

    // A file that cannot be read fails the sync, naming the flag and file.
    fs::remove_file(&token).expect("removing the token");
    let third = up.commit_file("index.html", "v3\n", "third");
    let missing = format!(
        "--password-file (GITSYNC_PASSWORD_FILE): cannot read {:?}",
        token.display().to_string()
    );
    run.wait_until(DEADLINE, "a sync failing on the missing file", || {
        sync_errors(&run.stderr())
            .iter()
            .any(|e| e.contains(&missing))
    });
    assert_eq!(s.published().as_deref(), Some(second.as_str()));
    fs::write(&token, OTHER).expect("restoring the token");
    run.wait_for_link_hash(&s.link(), &third);
    run.assert_running();
}

#[test]
fn credentials_in_the_url_are_used_and_kept_out_of_the_repository() {
    let up = upstream();
    let http = server(&up, SECRET);
    let s = Scratch::new();
    let out = s
        .sidecar(&http.url_with_auth(USER, SECRET, up.name()))
        .arg("--one-time")
        .run(RUN_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
    assert!(http.unauthorized() >= 1, "the server must have asked");
    let git_config = fs::read_to_string(s.root.join(".git/config")).expect(".git/config");
    assert!(git_config.contains(&http.url(up.name())), "{git_config}");
    assert_no_secret(&[
        ("stderr+stdout", &describe_output(&out)),
        (".git/config", &git_config),
    ]);
}

#[test]
fn username_and_password_file_over_https() {
    let up = upstream();
    let ca = TestCa::new();
    let http = server(&up, SECRET);
    let tls = TlsProxy::start(http.addr(), &ca.cert_pem, &ca.key_pem);
    let s = Scratch::new();
    let token = write_file(&s, "token", SECRET);
    let out = s
        .sidecar(&tls.url(up.name()))
        .args(["--username", USER, "--one-time", "--password-file"])
        .arg(&token)
        .env("SSL_CERT_FILE", &ca.ca_pem)
        .run(RUN_TIMEOUT);
    let context = || format!("{}\ntls proxy log:\n{}", describe_output(&out), tls.log());
    assert!(out.status.success(), "{}", context());
    assert_eq!(assert_published_layout(&s.root, &s.link()), up.head());
    assert!(tls.handshakes_ok() >= 1, "{}", context());
    assert!(http.unauthorized() >= 1, "{}", context());
    // Unlike http://, no warning about an unencrypted password.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("unencrypted"),
        "{}",
        context()
    );
}

#[test]
fn credential_conflicts_are_all_reported_at_once() {
    let up = upstream();
    let s = Scratch::new();
    let token = write_file(&s, "token", SECRET);
    let url = format!("http://{USER}:{OTHER}@127.0.0.1:9/{}", up.name());
    let out = s
        .sidecar(&url)
        .args(["--username", USER, "--one-time", "--password-file"])
        .arg(&token)
        .env("GITSYNC_PASSWORD", SECRET)
        .run(RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_no_secret(&[("stderr", &stderr)]);
    assert!(
        !stderr.contains(OTHER),
        "the URL's password was echoed:\n{stderr}"
    );
    for expected in [
        "--username (GITSYNC_USERNAME): cannot be combined with credentials in --repo (GITSYNC_REPO)",
        "GITSYNC_PASSWORD (environment only): cannot be combined with --password-file \
         (GITSYNC_PASSWORD_FILE)",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?}\n{}", describe_output(&out));
    }
    // A password without --username, from the legacy variables.
    let out = s
        .sidecar(&format!("http://127.0.0.1:9/{}", up.name()))
        .arg("--one-time")
        .env("GIT_SYNC_PASSWORD", SECRET)
        .env("GIT_SYNC_PASSWORD_FILE", &token)
        .run(RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "GIT_SYNC_PASSWORD (environment only): requires --username (GITSYNC_USERNAME)",
        "--password-file (GIT_SYNC_PASSWORD_FILE): requires --username (GITSYNC_USERNAME)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?}\n{}",
            describe_output(&out)
        );
    }
    // And --username alone.
    let out = s
        .sidecar(&format!("http://127.0.0.1:9/{}", up.name()))
        .args(["--username", USER, "--one-time"])
        .run(RUN_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "--username (GITSYNC_USERNAME): requires a password: set GITSYNC_PASSWORD \
             (environment only) or --password-file (GITSYNC_PASSWORD_FILE)"
        ),
        "{}",
        describe_output(&out)
    );
    assert!(s.published().is_none());
}

#[test]
fn the_secret_appears_nowhere_the_process_writes() {
    let up = upstream();
    // The server first wants another password: the sidecar's is wrong.
    let http = server(&up, OTHER);
    let s = Scratch::new();
    let error_file = s.error_file();
    let hook_env = s.dir.path().join("hook-env");
    let run = polling(&s, &http.url(up.name()))
        .args(["--username", USER, "--http-metrics", "-v", "9"])
        .arg("--error-file")
        .arg(&error_file)
        .args(["--exechook-command=/bin/sh", "--exechook-arg=-c"])
        .arg(format!("--exechook-arg=env > {}", hook_env.display()))
        .args(["--http-bind", "127.0.0.1:0"])
        .env("GITSYNC_PASSWORD", SECRET)
        .spawn();
    let addr = wait_for_http_address(&run);
    let get = |path: &str| {
        client::get(&addr, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
    };
    run.wait_until(DEADLINE, "the error file of a rejected sync", || {
        error_file_has_err(&error_file)
    });
    let failed_error_file = fs::read_to_string(&error_file).expect("error file");
    assert!(
        failed_error_file.contains("authentication failed"),
        "{failed_error_file}"
    );
    let failed_status = get("/status");
    assert!(
        failed_status.contains("authentication failed"),
        "{failed_status}"
    );
    let failed_metrics = get("/metrics");

    http.set_basic_auth(USER, SECRET);
    run.wait_for_link_hash(&s.link(), &up.head());
    run.wait_until(DEADLINE, "the exechook's environment dump", || {
        fs::read_to_string(&hook_env).is_ok_and(|e| e.contains("GITSYNC_HASH="))
    });
    let hook = fs::read_to_string(&hook_env).expect("hook env");
    let status = get("/status");
    let metrics = get("/metrics");
    run.signal(nix::sys::signal::Signal::SIGTERM);
    run.wait_until_even_if_exited(DEADLINE, "exit after SIGTERM", || {
        run.try_status().is_some()
    });
    assert!(!error_file.exists(), "removed after the good sync");
    assert_no_secret(&[
        // Logs go to stderr; stdout is checked all the same.
        (
            "stdout and stderr",
            &format!("{}\n{}", run.stdout(), run.stderr()),
        ),
        ("error file", &failed_error_file),
        ("/status (failing)", &failed_status),
        ("/metrics (failing)", &failed_metrics),
        ("/status", &status),
        ("/metrics", &metrics),
        ("exechook environment", &hook),
    ]);
}

/// Fails naming the place where the secret, or its basic-auth encoding, shows up.
fn assert_no_secret(places: &[(&str, &str)]) {
    let forms = [
        SECRET.to_string(),
        crate::support::base64(format!("{USER}:{SECRET}").as_bytes()),
        crate::support::base64(SECRET.as_bytes()),
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

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn a_rotated_kubernetes_secret_volume_is_followed() {
    let up = upstream();
    let http = server(&up, SECRET);
    let s = Scratch::new();
    let mut volume = SecretVolume::new(s.dir.path().join("git-secret"), SECRET);
    let run = polling(&s, &http.url(up.name()))
        .args(["--username", USER, "--password-file"])
        .arg(volume.token_path())
        .spawn();
    run.wait_for_link_hash(&s.link(), &up.head());

    // The kubelet's update: the directory the token first resolved to is gone.
    http.set_basic_auth(USER, OTHER);
    volume.update(OTHER);
    let second = up.commit_file("index.html", "v2\n", "second");
    run.wait_for_link_hash(&s.link(), &second);
    run.assert_running();
}

/// A forge that moved the repository to another host answers with a redirect
/// there, and the other host asks for credentials (here it always does). git
/// sends them only to the host of the URL it was given; so must we, whether
/// they come from `--password-file` or the URL: the sync fails saying where
/// the redirect led, and the other host never sees an `Authorization`.
#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    use crate::support::http_server::{Answer, Request, TestServer};
    let other = TestServer::start(|_, _: &Request| {
        Answer::new(401, "").header("WWW-Authenticate", "Basic realm=\"other\"")
    });
    let other_base = format!("http://localhost:{}", other.port());
    let forge = {
        let other_base = other_base.clone();
        TestServer::start(move |_, req: &Request| {
            Answer::new(302, "").header("Location", &format!("{other_base}{}", req.target))
        })
    };
    let s = Scratch::new();
    let password_file = write_file(&s, "password", SECRET);
    let forge_url = forge.url("/org/site.git");
    let with_userinfo = forge_url.replacen("http://", &format!("http://{USER}:{SECRET}@"), 1);
    let ways = [
        s.sidecar(&forge_url)
            .args(["--username", USER, "--password-file"])
            .arg(&password_file),
        s.sidecar(&with_userinfo),
    ];
    for way in ways {
        let out = way.arg("--one-time").run(RUN_TIMEOUT);
        assert!(!out.status.success(), "{}", describe_output(&out));
        let said = describe_output(&out);
        assert!(
            said.contains(&format!(
                "the server redirected to {other_base}, which asks for credentials"
            )) && said.contains(&format!("only to http://127.0.0.1:{} (the", forge.port())),
            "{said}"
        );
        assert_no_secret(&[("stderr+stdout", &said)]);
    }
    let requests = other.requests();
    assert!(
        requests.len() >= 2,
        "the redirects were followed: {}",
        other.describe()
    );
    for req in requests {
        assert_eq!(req.header("authorization"), None, "{req:?}");
    }
}
