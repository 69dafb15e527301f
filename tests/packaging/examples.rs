//! The runnable examples in `examples/` run as tests: each shell script
//! starts the built sidecar and a real nginx on 127.0.0.1, must exit 0, and
//! must have printed what it observed (pages served, links, HTTP answers,
//! metrics) in the expected order. The scripts check every step themselves;
//! these tests also pin down what a reader of their output is shown. The
//! example nginx configuration and the nginx and httpd snippets of
//! `docs/serving.md` also run in real servers, which must never serve a
//! worktree's `.git`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::servers::Nginx;
use crate::support::sidecar::{bin, describe_output, Sidecar};
use crate::support::{client, is_hex40, Scratch, Upstream};

/// Bound for one script (a few seconds on an idle machine). On timeout the
/// harness kills the script's whole process group (sidecar and nginx too).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `examples/<name>` against the binary under test; panics with its
/// output unless it exits 0.
fn run_example(name: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let out: Output = Sidecar::program(script)
        .env("GIT_SIDECAR", bin())
        .run(SCRIPT_TIMEOUT);
    let report = describe_output(&out);
    assert!(out.status.success(), "{name} failed\n{report}");
    report
}

/// The rest of each output line that starts (after indentation) with `prefix`.
fn after<'a>(report: &'a str, prefix: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix))
        .collect()
}

/// Headings of the pages nginx served, in order ("GET http://127.0.0.1:PORT/ -> ...").
fn pages_served(report: &str) -> Vec<&str> {
    after(report, "GET http://127.0.0.1:")
        .into_iter()
        .filter_map(|rest| rest.split_once("/ -> ").map(|(_, heading)| heading))
        .collect()
}

/// Hashes of the commits pushed upstream ("pushed revision N: <sha>"), in order.
fn pushed(report: &str) -> Vec<&str> {
    after(report, "pushed revision ")
        .into_iter()
        .filter_map(|rest| rest.split_once(": ").map(|(_, sha)| sha))
        .collect()
}

/// Hashes the published link pointed at ("root/site -> .worktrees/<sha>"), in order.
fn links_shown(report: &str) -> Vec<&str> {
    after(report, "root/site -> .worktrees/")
}

fn assert_two_commits(report: &str) -> Vec<&str> {
    let shas = pushed(report);
    assert!(
        shas.len() == 2 && shas.iter().all(|s| is_hex40(s)) && shas[0] != shas[1],
        "expected two distinct pushed commits, got {shas:?}\n{report}"
    );
    shas
}

#[test]
fn nginx_site_shows_the_pushed_commit() {
    let report = run_example("nginx-site.sh");
    let shas = assert_two_commits(&report);
    let refused: Vec<&str> = after(&report, "GET /")
        .into_iter()
        .filter(|rest| rest.ends_with("HTTP 404"))
        .collect();
    assert_eq!(
        refused,
        [".git -> HTTP 404", ".git/config -> HTTP 404"],
        "the worktree's .git must not be served\n{report}"
    );
    assert_eq!(
        pages_served(&report),
        ["Hello from revision 1", "Hello from revision 2"],
        "pages nginx served\n{report}"
    );
    assert_eq!(links_shown(&report), shas, "published links\n{report}");
}

#[test]
fn webhook_deploy_publishes_only_on_a_signed_push() {
    let report = run_example("webhook-deploy.sh");
    let shas = assert_two_commits(&report);
    // Before the push, after it, after the two refused deliveries, after the signed one.
    assert_eq!(
        pages_served(&report),
        [
            "Hello from revision 1",
            "Hello from revision 1",
            "Hello from revision 1",
            "Hello from revision 2"
        ],
        "pages nginx served\n{report}"
    );
    let codes: Vec<&str> = after(&report, "HTTP ")
        .into_iter()
        .map(|rest| rest.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["401", "401", "202"], "webhook answers\n{report}");
    assert_eq!(links_shown(&report), [shas[1]], "published link\n{report}");
    for result in ["missing_signature", "bad_signature", "ok"] {
        let line = format!(
            "git_sidecar_webhook_requests_total{{provider=\"github\",result=\"{result}\"}} 1"
        );
        assert!(
            after(&report, "").contains(&line.as_str()),
            "missing metric line {line}\n{report}"
        );
    }
}

/// `examples/nginx.conf.template` filled in the way `examples/common.sh`
/// does, serving `site`.
fn example_nginx_conf(dir: &Path, port: u16, site: &Path) -> String {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nginx.conf.template"),
    )
    .expect("reading examples/nginx.conf.template");
    // Root's files live in 0700 temporary directories: workers run as root too.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;"
    } else {
        ""
    };
    template
        .replace("@USER_DIRECTIVE@", user)
        .replace("@NGINX_DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@SITE@", &site.display().to_string())
}

#[test]
fn the_example_nginx_config_never_serves_a_dot_git() {
    let up = Upstream::new();
    up.commit_files(
        &[
            ("index.html", &b"<h1>home</h1>\n"[..]),
            ("docs/page.html", &b"<h1>docs</h1>\n"[..]),
        ],
        "site",
    );
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .run(SCRIPT_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    // The published worktree's own .git file, plus one deeper down (what a
    // nested checkout made by a hook, or a submodule's, looks like).
    assert!(
        s.link().join(".git").is_file(),
        "a worktree has a .git file"
    );
    std::fs::write(s.link().join("docs/.git"), "gitdir: /somewhere/secret\n").expect("write");
    let site = s.link();
    let nginx = Nginx::start_conf(|dir, port| example_nginx_conf(dir, port, &site));
    let get =
        |path: &str| client::get(&nginx.addr(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(get("/").status, 200, "{}", nginx.error_log());
    assert_eq!(get("/docs/page.html").text(), "<h1>docs</h1>\n");
    for path in ["/.git", "/.git/config", "/docs/.git", "/docs/.git/HEAD"] {
        let r = get(path);
        assert!(
            r.status == 403 || r.status == 404,
            "GET {path} must be refused: {r}"
        );
        assert!(
            !r.text().contains("gitdir"),
            "GET {path} leaked the .git file: {r}"
        );
    }
}

/// The first ```<lang> block of `docs/serving.md` (the serving snippets the
/// README points at).
fn readme_serving_block(lang: &str) -> String {
    let section =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/serving.md"))
            .expect("reading docs/serving.md");
    let fence = format!("```{lang}\n");
    let start = section.find(&fence).expect("a code block of that language") + fence.len();
    section[start..start + section[start..].find("```").expect("block end")].to_string()
}

/// The documented nginx snippet (the first ```nginx block of
/// `docs/serving.md`), made to listen on `port` and serve `site`, inside a
/// minimal nginx.conf that keeps its files in `dir`.
fn readme_nginx_conf(dir: &Path, port: u16, site: &Path) -> String {
    let snippet = readme_serving_block("nginx");
    let snippet = snippet.as_str();
    assert!(snippet.contains("listen 8080;") && snippet.contains("root /git/site;"));
    let snippet = snippet
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
        .replace("root /git/site;", &format!("root {};", site.display()));
    let d = dir.display();
    let user = if nix::unistd::geteuid().is_root() {
        "user root;"
    } else {
        ""
    };
    format!(
        "{user}\ndaemon off;\npid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/client;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{snippet}}}\n"
    )
}

#[test]
fn the_readme_nginx_snippet_never_serves_a_dot_git() {
    let up = Upstream::new();
    up.commit_file("index.html", "<h1>home</h1>\n", "site");
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .run(SCRIPT_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let site = s.link();
    let nginx = Nginx::start_conf(|dir, port| readme_nginx_conf(dir, port, &site));
    let get =
        |path: &str| client::get(&nginx.addr(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(get("/").text(), "<h1>home</h1>\n", "{}", nginx.error_log());
    let r = get("/.git");
    assert!(
        r.status == 403 || r.status == 404,
        "GET /.git must be refused: {r}"
    );
}

/// The user httpd runs as here: it refuses to serve as root.
const HTTPD_UID: u32 = 65_534;
const APACHE2: &str = "/usr/sbin/apache2";

/// The documented httpd snippet (the ```apache block of `docs/serving.md`),
/// serving `site` (whose parent stands for `/git`), in a minimal httpd.conf
/// keeping its files in `dir` and hardened as the httpd manifest is
/// (`<Directory />` with `Options None`, so the snippet must allow the
/// link itself).
fn readme_httpd_conf(dir: &Path, port: u16, site: &Path) -> String {
    let snippet = readme_serving_block("apache");
    let snippet = snippet.as_str();
    assert!(snippet.contains("\"/git/site\""), "{snippet}");
    let parent = site.parent().expect("the link's directory");
    let snippet = snippet
        .replace("/git/site", &site.display().to_string())
        .replace("\"/git\"", &format!("\"{}\"", parent.display()));
    let (d, m) = (dir.display(), "/usr/lib/apache2/modules");
    format!(
        "ServerRoot \"{d}\"\nDefaultRuntimeDir \"{d}\"\nPidFile \"{d}/httpd.pid\"\n\
         ErrorLog \"{d}/error.log\"\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
         LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
         LoadModule authz_core_module {m}/mod_authz_core.so\n\
         <Directory />\n Options None\n AllowOverride None\n Require all denied\n</Directory>\n\
         {snippet}"
    )
}

#[test]
fn the_readme_httpd_snippet_never_serves_a_dot_git() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    assert!(
        Path::new(APACHE2).exists(),
        "{APACHE2} not found: install it (Debian/Ubuntu: apt-get install apache2)"
    );
    let up = Upstream::new();
    up.commit_file("index.html", "<h1>home</h1>\n", "site");
    let s = Scratch::new();
    let out = s
        .sidecar(&up.file_url())
        .arg("--one-time")
        .run(SCRIPT_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    // httpd runs as another user: let it reach the tree and its own directory.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = crate::support::tempdir("httpd");
    let id = Some(nix::unistd::Uid::from_raw(HTTPD_UID));
    let gid = Some(nix::unistd::Gid::from_raw(HTTPD_UID));
    nix::unistd::chown(dir.path(), id, gid).expect("chown the httpd directory");
    let port = crate::support::free_port();
    let conf = dir.path().join("httpd.conf");
    std::fs::write(&conf, readme_httpd_conf(dir.path(), port, &s.link())).expect("httpd.conf");
    let mut cmd = std::process::Command::new(APACHE2);
    cmd.arg("-f")
        .arg(&conf)
        .arg("-DFOREGROUND")
        .process_group(0);
    if nix::unistd::geteuid().is_root() {
        cmd.uid(HTTPD_UID).gid(HTTPD_UID);
    }
    let mut httpd = KillOnDrop(cmd.spawn().expect("starting apache2"));
    let addr = format!("127.0.0.1:{port}");
    let error_log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    let up_and_serving = crate::support::poll_until(crate::support::DEADLINE, || {
        client::get(&addr, "/index.html").is_ok_and(|r| r.status == 200)
            || !matches!(httpd.0.try_wait(), Ok(None))
    });
    assert!(
        up_and_serving && matches!(httpd.0.try_wait(), Ok(None)),
        "httpd did not serve the docs/serving.md snippet\n{}",
        error_log()
    );
    let get = |path: &str| client::get(&addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(get("/index.html").text(), "<h1>home</h1>\n");
    let r = get("/.git");
    assert!(
        r.status == 403 || r.status == 404,
        "GET /.git must be refused: {r}"
    );
}

/// A server process, killed with its process group when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}
