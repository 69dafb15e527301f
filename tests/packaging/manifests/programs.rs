//! Real programs on 127.0.0.1 with the manifests' settings: the built
//! git-sidecar with each manifest's args (probes, the Ingress's webhook path,
//! the PodMonitor's scrape path), and nginx and httpd (Debian's, run as an
//! unprivileged user) with the shipped configurations.

use super::*;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::client::wait_for_http_address;
use crate::support::client::{self, Response};
use crate::support::{free_port, poll_until, Sidecar, Upstream, DEADLINE};

const NGINX_BIN: &str = "/usr/sbin/nginx";
const APACHE2_BIN: &str = "/usr/sbin/apache2";
/// Debian's httpd modules, standing in for the httpd image's `modules/`.
const APACHE2_MODULES: &str = "/usr/lib/apache2/modules";

/// The main nginx.conf of nginxinc/nginx-unprivileged, which includes the
/// ConfigMap mounted at /etc/nginx/conf.d (what matters of it here; its log
/// files are links to the container's stdout and stderr).
const UNPRIVILEGED_NGINX_CONF: &str = "\
worker_processes 1;
error_log stderr notice;
pid /tmp/nginx.pid;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log /dev/stdout;
    default_type application/octet-stream;
    proxy_temp_path /tmp/proxy_temp;
    client_body_temp_path /tmp/client_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    include /etc/nginx/conf.d/*.conf;
}
";

/// A server process, killed with its process group when dropped.
struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.pid(), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn require_program(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: install it (Debian/Ubuntu: apt-get install {package}; .ci/run does this)"
    );
}

/// Starts `line` (program first) as the server user, output into `log`.
fn spawn_server(line: &[String], log: PathBuf) -> ServerProcess {
    let out = fs::File::create(&log).expect("creating the server log");
    // Its own log, so it may reopen /proc/self/fd/2 (as runc arranges in a pod).
    give_to_server_user(&log);
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup the log"))
        .stderr(out)
        .process_group(0);
    if running_as_root() {
        cmd.uid(SERVER_UID).gid(SERVER_UID);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {line:?}: {e}"));
    ServerProcess { child, log }
}

/// One published commit: `git-sidecar --one-time` with the pod's `--root`
/// and `--link`, mapped onto `pod_fs`.
fn publish(up: &Upstream, pod: &PodSpec, pod_fs: &PodFs) {
    let sidecar = pod
        .running_sidecars()
        .next()
        .expect("a git-sidecar container");
    let root = sidecar.setting("root").expect("--root");
    let link = sidecar.link_path().expect("--link");
    let out = Sidecar::new()
        .args(["--repo", &up.file_url(), "--one-time"])
        .arg(format!("--root={}", pod_fs.map(sidecar, &root, &[])))
        .arg(format!("--link={}", pod_fs.map(sidecar, &link, &[])))
        .run(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "publishing failed\n{}",
        crate::support::sidecar::describe_output(&out)
    );
}

/// `text` with `listen N;` (nginx) / `Listen N` (httpd) of each declared
/// port moved to its address in `ports` (on 127.0.0.1).
fn listen_locally(text: &str, c: &Container, ports: &BTreeMap<u16, String>) -> String {
    let mut out = text.to_string();
    for (port, addr) in ports {
        for keyword in ["listen", "Listen"] {
            out = out.replace(&format!("{keyword} {port};"), &format!("{keyword} {addr};"));
            out = out.replace(
                &format!("{keyword} {port}\n"),
                &format!("{keyword} {addr}\n"),
            );
        }
    }
    assert!(
        ports.values().any(|addr| out.contains(addr.as_str())),
        "container {}: its config does not listen on a declared containerPort {:?}",
        c.name,
        ports.keys()
    );
    out
}

/// A free 127.0.0.1 address for each of `c`'s declared ports.
fn local_ports(c: &Container) -> BTreeMap<u16, String> {
    c.ports
        .iter()
        .map(|p| (p.container_port, format!("127.0.0.1:{}", free_port())))
        .collect()
}

/// Where the web images keep what their configs refer to, here: the httpd
/// image's ServerRoot becomes a directory of Debian's modules and mime.types.
fn image_layout(server: WebServer, pod_fs: &PodFs) -> Vec<(String, String)> {
    match server {
        WebServer::Nginx => Vec::new(),
        WebServer::Httpd => {
            let server_root = pod_fs.dir.path().join("apache2");
            fs::create_dir_all(server_root.join("conf")).expect("creating the httpd ServerRoot");
            std::os::unix::fs::symlink(APACHE2_MODULES, server_root.join("modules"))
                .expect("modules");
            std::os::unix::fs::symlink("/etc/mime.types", server_root.join("conf/mime.types"))
                .expect("mime.types");
            vec![(
                "/usr/local/apache2".to_string(),
                server_root.display().to_string(),
            )]
        }
    }
}

/// The web server container `c` of `pod`, started here with its manifest's
/// configuration (ConfigMaps rewritten onto `pod_fs` and `ports`).
fn start_web_server(
    pod: &PodSpec,
    c: &Container,
    pod_fs: &PodFs,
    ports: &BTreeMap<u16, String>,
) -> ServerProcess {
    let server = c.web_server().expect("a web server container");
    let (program, package) = match server {
        WebServer::Nginx => (NGINX_BIN, "nginx"),
        WebServer::Httpd => (APACHE2_BIN, "apache2"),
    };
    require_program(program, package);
    let layout = image_layout(server, pod_fs);
    rewrite_config_maps(pod, c, pod_fs, &layout, ports);
    let mut line: Vec<String> = c
        .command
        .iter()
        .chain(&c.args)
        .map(|a| pod_fs.map(c, a, &layout))
        .collect();
    if line.is_empty() {
        // The nginx image's own command, with its main nginx.conf.
        let main = pod_fs.dir.path().join("nginx.conf");
        fs::write(&main, pod_fs.map(c, UNPRIVILEGED_NGINX_CONF, &[])).expect("writing nginx.conf");
        line = vec![
            "nginx".into(),
            "-c".into(),
            main.display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ];
    }
    line[0] = program.to_string();
    if server == WebServer::Nginx {
        // Logs to the log file before the configuration is read, too.
        line.extend(["-e".to_string(), "stderr".to_string()]);
    }
    spawn_server(&line, pod_fs.dir.path().join(format!("{}.log", c.name)))
}

/// Rewrites the ConfigMap files `c` mounts: container paths onto `pod_fs`,
/// and the `.conf` files listening on `ports`.
fn rewrite_config_maps(
    pod: &PodSpec,
    c: &Container,
    pod_fs: &PodFs,
    layout: &[(String, String)],
    ports: &BTreeMap<u16, String>,
) {
    for mount in &c.volume_mounts {
        if pod
            .volume(&mount.name)
            .and_then(|v| v.config_map.as_ref())
            .is_none()
        {
            continue;
        }
        let dir = pod_fs.volume_dir(&mount.name);
        for entry in fs::read_dir(&dir).expect("listing a ConfigMap volume") {
            let path = entry.expect("a ConfigMap file").path();
            let text = fs::read_to_string(&path).expect("reading a ConfigMap file");
            let mut text = pod_fs.map(c, &text, layout);
            if path.extension().is_some_and(|e| e == "conf") {
                text = listen_locally(&text, c, ports);
            }
            fs::write(&path, text).expect("rewriting a ConfigMap file");
        }
    }
}

pub(super) fn get(addr: &str, path: &str) -> Response {
    client::get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// Waits until `GET path` answers `status` (and `body`, if given).
pub(super) fn wait_for(
    addr: &str,
    path: &str,
    status: u16,
    body: Option<&str>,
    context: impl Fn() -> String,
) {
    let mut last = None;
    let ok = poll_until(DEADLINE, || {
        let r = client::get(addr, path).ok();
        let ok = r
            .as_ref()
            .is_some_and(|r| r.status == status && body.is_none_or(|b| r.text() == b));
        last = r;
        ok
    });
    let last = last.map_or("none".to_string(), |r| r.to_string());
    assert!(
        ok,
        "GET http://{addr}{path}: wanted {status} {body:?}, last answer {last}\n{}",
        context()
    );
}

/// The address a probe's port maps to here.
fn probe_address<'a>(c: &Container, port: &PortRef, ports: &'a BTreeMap<u16, String>) -> &'a str {
    let number = c
        .port_number(port)
        .expect("a declared port (checked statically)");
    &ports[&number]
}

/// Web servers of the variants whose configuration is a ConfigMap.
fn config_map_web_servers() -> Vec<(Model, Workload, Container)> {
    let mut found = Vec::new();
    for v in all_variants() {
        let m = model_of(&v);
        for w in m.objects.workloads.clone() {
            for c in w.pod.containers.clone() {
                if c.web_server().is_some() && !config_from_repository(&w.pod, &c) {
                    found.push((model_of(&v), w.clone(), c));
                }
            }
        }
    }
    found
}

/// The shipped nginx and httpd configurations serve the published link,
/// answer their probes, hide the worktree's `.git` file, and serve the next
/// commit as soon as it is published, without a reload.
#[test]
fn web_servers_serve_the_published_link_with_the_shipped_configs() {
    let servers = config_map_web_servers();
    let kinds: BTreeSet<String> = servers
        .iter()
        .map(|(_, _, c)| format!("{:?}", c.web_server()))
        .collect();
    assert_eq!(
        kinds.len(),
        2,
        "expected nginx and httpd variants, found {kinds:?}"
    );
    for (m, w, c) in &servers {
        serve_two_commits(m, w, c);
    }
}

fn serve_two_commits(m: &Model, w: &Workload, c: &Container) {
    let at = format!("{}/{} container {}", m.name, w.what, c.name);
    let up = Upstream::new();
    up.commit_file("index.html", "first commit\n", "first");
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    publish(&up, &w.pod, &pod_fs);
    let ports = local_ports(c);
    let server = start_web_server(&w.pod, c, &pod_fs, &ports);
    let context = || format!("{at}\n--- server log ---\n{}", server.log());
    let addr = ports.values().next().expect("a declared port").clone();
    wait_for(&addr, "/", 200, Some("first commit\n"), context);
    for (kind, probe) in c.probes() {
        if let Some(get_probe) = probe.and_then(|p| p.http_get.as_ref()) {
            let probe_addr = probe_address(c, &get_probe.port, &ports);
            let r = get(probe_addr, &get_probe.path);
            assert_eq!(
                r.status,
                200,
                "{kind} {}: {r}\n{}",
                get_probe.path,
                context()
            );
        }
    }
    let git_file = get(&addr, "/.git");
    assert!(
        matches!(git_file.status, 403 | 404) && !git_file.text().contains("gitdir"),
        "the worktree's .git file is served: {git_file}\n{}",
        context()
    );
    up.commit_file("index.html", "second commit\n", "second");
    publish(&up, &w.pod, &pod_fs);
    let r = get(&addr, "/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "second commit\n"),
        "right after the publish, without a reload\n{}",
        context()
    );
}

/// config-reload: nginx runs with the configuration of the published commit
/// (`-c` through the link, from the repository), and a SIGHUP to its master,
/// what `--reload-process nginx` sends after a publish, switches it to the
/// next commit's configuration. (The sidecar itself is not run with
/// `--reload-process` here: it would signal every nginx on this machine.)
#[test]
fn config_reload_nginx_takes_its_configuration_from_the_published_commit() {
    let v = variant("config-reload");
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let c = w
        .pod
        .containers
        .iter()
        .find(|c| c.web_server().is_some())
        .expect("nginx");
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let ports = local_ports(c);
    // The example repository, with the container's paths mapped onto pod_fs.
    let example =
        |rel: &str| fs::read_to_string(v.dir.join("repo-example").join(rel)).expect("repo-example");
    let conf = listen_locally(&pod_fs.map(c, &example("nginx/nginx.conf"), &[]), c, &ports);
    let up = Upstream::new();
    up.commit_files(
        &[
            ("nginx/nginx.conf", conf.as_bytes()),
            ("public/index.html", example("public/index.html").as_bytes()),
        ],
        "the example repository",
    );
    publish(&up, &w.pod, &pod_fs);
    let server = start_web_server(&w.pod, c, &pod_fs, &ports);
    let context = || format!("--- nginx log ---\n{}", server.log());
    let addr = &ports[&8080];
    wait_for(addr, "/", 200, Some(&example("public/index.html")), context);
    wait_for(addr, "/healthz", 200, Some("ok\n"), context);
    let conf_url = get(addr, "/nginx/nginx.conf");
    assert_eq!(
        conf_url.status, 404,
        "the configuration must not be served: {conf_url}"
    );

    let next = conf.replace("return 200 \"ok\\n\";", "return 200 \"reloaded\\n\";");
    assert_ne!(next, conf, "the example's /healthz location changed");
    up.commit_files(
        &[
            ("nginx/nginx.conf", next.as_bytes()),
            ("public/index.html", b"second commit\n"),
        ],
        "new configuration",
    );
    publish(&up, &w.pod, &pod_fs);
    let r = get(addr, "/");
    assert_eq!(
        r.text(),
        "second commit\n",
        "content switches without a reload\n{}",
        context()
    );
    nix::sys::signal::kill(server.pid(), nix::sys::signal::Signal::SIGHUP)
        .expect("SIGHUP to nginx");
    wait_for(addr, "/healthz", 200, Some("reloaded\n"), context);
}

/// Where each Ingress path of `m` leads: the git-sidecar container behind it.
fn ingress_paths_to<'a>(m: &'a Model, w: &Workload, c: &Container) -> Vec<&'a str> {
    let mut paths = Vec::new();
    for ing in &m.objects.ingresses {
        for path in ing.spec.rules.iter().flat_map(|r| &r.http.paths) {
            let Some(svc) = m.objects.service(&path.backend.service.name) else {
                continue;
            };
            let reaches = svc.spec.ports.iter().any(|p| {
                let target = p.target_port.clone().unwrap_or(PortRef::Number(p.port));
                selects(&svc.spec.selector, &w.labels)
                    && w.pod
                        .container_with_port(&target)
                        .is_some_and(|t| t.name == c.name)
            });
            if reaches {
                paths.push(path.path.as_str());
            }
        }
    }
    paths
}

/// The scrape paths of every PodMonitor (of any variant) selecting `w` on a port of `c`.
fn scrape_paths(all: &[Model], w: &Workload, c: &Container) -> Vec<String> {
    all.iter()
        .flat_map(|m| &m.objects.pod_monitors)
        .filter(|pm| selects(&pm.spec.selector.match_labels, &w.labels))
        .flat_map(|pm| &pm.spec.pod_metrics_endpoints)
        .filter(|ep| c.port_number(&PortRef::Name(ep.port.clone())).is_some())
        .map(|ep| ep.path.clone().unwrap_or_else(|| "/metrics".to_string()))
        .collect()
}

/// A GitHub push for `repo`'s main branch, signed with `secret`.
fn signed_push(repo: &str, after: &str, secret: &[u8]) -> (Vec<u8>, String) {
    use hmac::{Hmac, KeyInit, Mac};
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000001",
        "after": after,
        "repository": { "clone_url": repo, "default_branch": "main" },
    })
    .to_string()
    .into_bytes();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("an HMAC key");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

/// The fixture's first commit as the manifest's git-sidecar accepts it:
/// with `--verify-signatures`, signed (`git commit -S`, an ssh-keygen key),
/// and the key files the variant mounts from its Secret hold that key (the
/// allowed_signers file) and a gpg-made key (the keyring), in place of the
/// Secret's placeholders.
pub(super) fn first_commit(up: &Upstream, c: &Container, pod_fs: &PodFs) -> String {
    use crate::support::signing::{Gpg, Signer, SshKey};
    if c.setting("verify-signatures").is_none_or(|m| m == "none") {
        return up.commit_file("index.html", "hello\n", "initial");
    }
    let key = SshKey::generate("ed25519");
    if let Some(file) = c.setting("verify-allowed-signers") {
        fs::write(
            pod_fs.map(c, &file, &[]),
            key.allowed("committer@example.invalid"),
        )
        .expect("writing the mounted allowed_signers");
    }
    if let Some(file) = c.setting("verify-pgp-keyring") {
        let gpg = Gpg::new();
        let fpr = gpg.generate(
            "Site <site@example.invalid>",
            "ed25519",
            "sign",
            "never",
            None,
        );
        fs::write(pod_fs.map(c, &file, &[]), gpg.export(&fpr, true))
            .expect("writing the mounted keyring");
    }
    up.commit_signed(&Signer::Ssh(&key), "index.html", "hello\n", "initial")
}

/// The manifest's args for a run here: the repository is a local upstream,
/// HTTP on 127.0.0.1:0, no `--reload-process` (it would signal every
/// process of that name on this machine), and `--peers` a loopback port
/// nobody listens on (the cluster's DNS name would be looked up off the
/// machine; the fan-out itself is tested in tests/it/peers.rs).
pub(super) fn local_args(args: Vec<String>, repo: &str) -> Vec<String> {
    let mut local: Vec<String> = args
        .into_iter()
        .filter(|a| {
            !a.starts_with("--reload-") && !a.starts_with("--repo") && !a.starts_with("--http-bind")
        })
        .map(|a| match a.starts_with("--peers=") {
            true => "--peers=127.0.0.1:1".to_string(),
            false => a,
        })
        .collect();
    local.push(format!("--repo={repo}"));
    local.push("--http-bind=127.0.0.1:0".to_string());
    local
}

/// The built git-sidecar, run with each (accepted) manifest's args, answers
/// 200 on every probe path, takes a signed push on the Ingress's path, and
/// serves metrics where the PodMonitor scrapes.
#[test]
fn git_sidecar_serves_the_manifests_probes_webhook_and_metrics() {
    let models: Vec<Model> = all_variants().iter().map(model_of).collect();
    let mut checked = 0;
    for m in models.iter().filter(|m| pending_flags(&m.name).is_none()) {
        for w in &m.objects.workloads {
            for c in w.pod.running_sidecars() {
                run_sidecar_like_the_manifest(&models, m, w, c);
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} git-sidecar containers run");
}

fn run_sidecar_like_the_manifest(all: &[Model], m: &Model, w: &Workload, c: &Container) {
    let at = format!("{}/{} container {}", m.name, w.what, c.name);
    let up = Upstream::new();
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let head = first_commit(&up, c, &pod_fs);
    let (args, env) = mapped_invocation(c, &pod_fs);
    let mut sidecar = Sidecar::new().args(local_args(args, &up.file_url()));
    for (name, value) in &env {
        sidecar = sidecar.env(name, value);
    }
    let run = sidecar.spawn();
    let addr = wait_for_http_address(&run);
    let context = || format!("{at}\n{}", run.logs());
    // Every probe is on --http-bind's port (checked statically): `addr` here.
    for (_, probe) in c.probes() {
        if let Some(get_probe) = probe.and_then(|p| p.http_get.as_ref()) {
            wait_for(&addr, &get_probe.path, 200, None, context);
        }
    }
    for path in ingress_paths_to(m, w, c) {
        let secret_file = c
            .setting("incoming-webhook-secret-file")
            .expect("a webhook secret file");
        let secret =
            fs::read(pod_fs.map(c, &secret_file, &[])).expect("the mounted webhook secret");
        if secret.trim_ascii_end() == b"CHANGE-ME" {
            // The shipped placeholder: warned about at start-up, never quoted.
            let stderr = run.stderr();
            assert!(
                stderr.contains("looks like a placeholder") && !stderr.contains("CHANGE-ME"),
                "{at}: no placeholder warning (or the value is logged)\n{}",
                context()
            );
        }
        // What the forge sends: the repository the manifest syncs.
        let repo = c.setting("repo").expect("--repo");
        let (body, signature) = signed_push(&repo, &head, secret.trim_ascii_end());
        let headers = [
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", signature.as_str()),
        ];
        let r = client::post(&addr, path, &headers, &body).expect("POST to the Ingress path");
        assert_eq!(
            r.status,
            202,
            "{at}: a signed push on the Ingress path {path}: {r}\n{}",
            context()
        );
    }
    for path in scrape_paths(all, w, c) {
        let r = get(&addr, &path);
        assert!(
            r.status == 200 && r.text().contains("git_sync_count_total"),
            "{at}: the PodMonitor's {path}: {r}\n{}",
            context()
        );
    }
}
