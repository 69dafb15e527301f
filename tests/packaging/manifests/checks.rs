//! The semantic checks no schema makes, over the typed model of one
//! variant (the PodMonitor check spans variants): each returns one message
//! per problem. The web server checks read nginx and httpd configurations.
//! Ends with the test that the shipped manifests pass them all.

use super::*;

pub(super) type Check = fn(&Model) -> Vec<String>;

/// The per-variant checks, by name (the PodMonitor check spans variants).
const CHECKS: &[(&str, Check)] = &[
    ("restartPolicy", check_restart_policy),
    ("probe ports", check_probe_ports),
    ("git-sidecar HTTP", check_sidecar_http),
    ("Services", check_services),
    ("Ingresses", check_ingresses),
    ("peers", check_peers),
    ("securityContext", check_hardening),
    ("resources", check_resources),
    ("volumes", check_volumes),
    ("mounted files", check_mounted_files),
    ("web server configs", check_web_configs),
    ("kustomization", check_kustomization),
];

fn all_problems(m: &Model) -> Vec<String> {
    CHECKS
        .iter()
        .flat_map(|(name, check)| check(m).into_iter().map(move |p| format!("[{name}] {p}")))
        .collect()
}

/// `restartPolicy` is only valid on init containers, and only `Always`
/// (a native sidecar); the schema accepts it anywhere (the API server does not).
pub(super) fn check_restart_policy(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for (c, init) in w.pod.all_containers() {
            match (c.restart_policy.as_deref(), init) {
                (None, _) | (Some("Always"), true) => {}
                (Some(p), true) => problems.push(format!(
                    "{} init container {}: restartPolicy {p:?}; only \"Always\" is valid",
                    w.what, c.name
                )),
                (Some(p), false) => problems.push(format!(
                    "{} container {}: restartPolicy {p:?} is only valid on init containers",
                    w.what, c.name
                )),
            }
        }
    }
    problems
}

/// Every httpGet/tcpSocket probe names a port its own container declares.
pub(super) fn check_probe_ports(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for (c, _) in w.pod.all_containers() {
            for (kind, probe) in c.probes() {
                let Some(probe) = probe else { continue };
                let ports = probe
                    .http_get
                    .iter()
                    .map(|g| &g.port)
                    .chain(probe.tcp_socket.iter().map(|t| &t.port));
                for port in ports {
                    if c.port_number(port).is_none() {
                        problems.push(format!(
                            "{} container {}: {kind} port {port} is not a declared containerPort",
                            w.what, c.name
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// The probe path each probe of a running git-sidecar must use: readiness
/// (and the start gate) on /readyz; liveness on /livez, which does not fail
/// when the remote does (a revoked token must not crash-loop the pod).
fn expected_sidecar_path(kind: &str) -> &'static str {
    if kind == "livenessProbe" {
        "/livez"
    } else {
        "/readyz"
    }
}

/// git-sidecar's `--http-bind` port is a declared containerPort, its probes
/// are httpGet on that port and on paths it serves, and a native sidecar
/// has the startupProbe that holds the web server back until the first sync.
pub(super) fn check_sidecar_http(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for c in w.pod.running_sidecars() {
            let at = format!("{} container {}", w.what, c.name);
            sidecar_http_problems(c, &at, &mut problems);
            let native = c.restart_policy.as_deref() == Some("Always");
            if native && c.startup_probe.is_none() {
                problems.push(format!(
                    "{at}: a native sidecar needs a startupProbe on /readyz, \
                     or the web server starts before the first sync"
                ));
            }
            for (kind, probe) in &c.probes()[1..] {
                if probe.is_none() {
                    problems.push(format!("{at}: no {kind}"));
                }
            }
        }
    }
    problems
}

fn sidecar_http_problems(c: &Container, at: &str, problems: &mut Vec<String>) {
    let bind = match c.http_bind_port() {
        None => {
            problems.push(format!(
                "{at}: no --http-bind, so nothing answers its probes"
            ));
            return;
        }
        Some(Err(raw)) => {
            problems.push(format!("{at}: --http-bind {raw:?} has no port"));
            return;
        }
        Some(Ok(port)) => port,
    };
    if c.port_number(&PortRef::Number(bind)).is_none() {
        problems.push(format!(
            "{at}: --http-bind port {bind} is not a declared containerPort"
        ));
    }
    let webhook = c.webhook_path();
    let mut served: Vec<&str> = SIDECAR_PROBE_PATHS.to_vec();
    served.push(&webhook);
    if c.bool_setting("http-metrics") {
        served.push("/metrics");
    }
    for (kind, probe) in c.probes() {
        let Some(probe) = probe else { continue };
        let Some(get) = &probe.http_get else {
            problems.push(format!(
                "{at}: {kind} must be an httpGet on /readyz or /livez"
            ));
            continue;
        };
        if !served.contains(&get.path.as_str()) {
            problems.push(format!(
                "{at}: {kind} path {:?} is not served by git-sidecar (it serves {served:?})",
                get.path
            ));
        } else if get.path != expected_sidecar_path(kind) {
            problems.push(format!(
                "{at}: {kind} on {:?}; use {}",
                get.path,
                expected_sidecar_path(kind)
            ));
        }
        match c.port_number(&get.port) {
            Some(port) if port != bind => problems.push(format!(
                "{at}: {kind} port {port} is not --http-bind's port {bind}"
            )),
            _ => {}
        }
    }
}

/// Every Service selects a pod template of this directory, and each
/// targetPort is a port of a container that keeps running in it.
pub(super) fn check_services(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for s in &m.objects.services {
        let pods = m.objects.selected(&s.spec.selector);
        if pods.is_empty() {
            problems.push(format!(
                "{}: its selector matches no pod template here",
                s.what
            ));
        }
        for port in &s.spec.ports {
            let target = port
                .target_port
                .clone()
                .unwrap_or(PortRef::Number(port.port));
            for w in &pods {
                if w.pod.container_with_port(&target).is_none() {
                    problems.push(format!(
                        "{}: targetPort {target} is not a port of a serving container of {}",
                        s.what, w.what
                    ));
                }
            }
        }
    }
    problems
}

/// Every Ingress backend is a Service port of this directory; one that
/// reaches git-sidecar routes exactly its `--incoming-webhook-path`, and
/// the webhook there has a secret (else it answers 403).
pub(super) fn check_ingresses(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for ing in &m.objects.ingresses {
        for path in ing.spec.rules.iter().flat_map(|r| &r.http.paths) {
            ingress_path_problems(m, &ing.what, path, &mut problems);
        }
    }
    problems
}

fn ingress_path_problems(m: &Model, at: &str, path: &IngressPath, problems: &mut Vec<String>) {
    let backend = &path.backend.service;
    let Some(svc) = m.objects.service(&backend.name) else {
        problems.push(format!(
            "{at}: backend Service {:?} is not defined here",
            backend.name
        ));
        return;
    };
    let port = svc.spec.ports.iter().find(|p| match &backend.port.name {
        Some(name) => p.name.as_deref() == Some(name.as_str()),
        None => Some(p.port) == backend.port.number,
    });
    let Some(port) = port else {
        problems.push(format!(
            "{at}: Service {} has no port {:?}",
            svc.name, backend.port
        ));
        return;
    };
    let target = port
        .target_port
        .clone()
        .unwrap_or(PortRef::Number(port.port));
    for w in m.objects.selected(&svc.spec.selector) {
        let Some(c) = w.pod.container_with_port(&target) else {
            continue; // reported by the Service check
        };
        if !c.is_git_sidecar() {
            continue;
        }
        if path.path != c.webhook_path() {
            problems.push(format!(
                "{at}: path {:?} reaches git-sidecar, whose --incoming-webhook-path is {:?}",
                path.path,
                c.webhook_path()
            ));
        }
        if !webhook_enabled(c) {
            problems.push(format!(
                "{at}: git-sidecar in {} has no webhook secret, so the webhook answers 403",
                w.what
            ));
        }
    }
}

/// A git-sidecar with `--peers NAME:PORT` finds its replicas through a
/// headless Service of this directory named by NAME's first label: no
/// cluster IP (so DNS lists the pods), not-ready pods left out, selecting
/// this very workload, with PORT reaching git-sidecar's HTTP port; and the
/// peer secret is mounted.
pub(super) fn check_peers(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for c in w.pod.running_sidecars() {
            let Some(peers) = c.setting("peers") else {
                continue;
            };
            let at = format!("{} container {}", w.what, c.name);
            if c.setting("peer-secret-file").is_none() {
                problems.push(format!("{at}: --peers without --peer-secret-file"));
            }
            let Some((host, port)) = peers.rsplit_once(':') else {
                problems.push(format!("{at}: --peers {peers:?} has no port"));
                continue;
            };
            let name = host.split('.').next().unwrap_or_default();
            let Some(svc) = m.objects.service(name) else {
                problems.push(format!(
                    "{at}: --peers names Service {name:?}, not defined here"
                ));
                continue;
            };
            peer_service_problems(w, c, svc, port, &mut problems);
        }
    }
    problems
}

fn peer_service_problems(
    w: &Workload,
    c: &Container,
    svc: &Named<ServiceSpec>,
    port: &str,
    problems: &mut Vec<String>,
) {
    let at = &svc.what;
    if svc.spec.cluster_ip.as_deref() != Some("None") {
        problems.push(format!(
            "{at}: the peers' Service must be headless (clusterIP: None), or DNS answers \
             with one virtual IP instead of the pods"
        ));
    }
    if svc.spec.publish_not_ready_addresses == Some(true) {
        problems.push(format!(
            "{at}: publishNotReadyAddresses: true sends hints to pods that are not ready"
        ));
    }
    if !selects(&svc.spec.selector, &w.labels) {
        problems.push(format!("{at}: does not select {}", w.what));
    }
    let reaches_sidecar = svc.spec.ports.iter().any(|p| {
        let target = p.target_port.clone().unwrap_or(PortRef::Number(p.port));
        p.port.to_string() == port
            && c.port_number(&target) == c.http_bind_port().and_then(Result::ok)
    });
    // Headless: DNS gives pod IPs, so the pods' own port is what counts.
    let pod_port = c
        .http_bind_port()
        .and_then(Result::ok)
        .map(|p| p.to_string());
    if !reaches_sidecar || pod_port.as_deref() != Some(port) {
        problems.push(format!(
            "{at}: --peers port {port} is not git-sidecar's --http-bind port ({})",
            pod_port.unwrap_or_else(|| "none".into())
        ));
    }
}

fn webhook_enabled(c: &Container) -> bool {
    c.setting("incoming-webhook-secret-file").is_some()
        || c.has_env("GITSYNC_INCOMING_WEBHOOK_SECRET")
        || c.bool_setting("incoming-webhook-allow-unsigned")
}

/// No ServiceAccount token; every container non-root, read-only root
/// filesystem, no privilege escalation, all capabilities dropped, seccomp
/// RuntimeDefault (pod or container level).
pub(super) fn check_hardening(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        if w.pod.automount_service_account_token != Some(false) {
            problems.push(format!(
                "{}: set automountServiceAccountToken: false (nothing here uses the API)",
                w.what
            ));
        }
        for (c, _) in w.pod.all_containers() {
            let at = format!("{} container {}", w.what, c.name);
            for p in container_hardening(c, &w.pod.security_context) {
                problems.push(format!("{at}: {p}"));
            }
        }
    }
    problems
}

fn container_hardening(c: &Container, pod: &PodSecurityContext) -> Vec<&'static str> {
    let sc = c.security_context.clone().unwrap_or_default();
    let mut problems = Vec::new();
    if sc.run_as_non_root.or(pod.run_as_non_root) != Some(true) {
        problems.push("runAsNonRoot is not true");
    }
    if sc.run_as_user.or(pod.run_as_user) == Some(0) {
        problems.push("runs as UID 0");
    }
    if sc.read_only_root_filesystem != Some(true) {
        problems.push("readOnlyRootFilesystem is not true");
    }
    if sc.allow_privilege_escalation != Some(false) {
        problems.push("allowPrivilegeEscalation is not false");
    }
    if sc.privileged == Some(true) {
        problems.push("privileged");
    }
    if !sc.capabilities.drop.iter().any(|d| d == "ALL") {
        problems.push("capabilities.drop does not contain ALL");
    }
    if !sc.capabilities.add.is_empty() {
        problems.push("adds capabilities");
    }
    let seccomp = sc.seccomp_profile.or_else(|| pod.seccomp_profile.clone());
    if seccomp.map(|s| s.kind).as_deref() != Some("RuntimeDefault") {
        problems.push("no seccompProfile RuntimeDefault (pod or container)");
    }
    problems
}

/// Every container requests CPU and memory and has a memory limit.
pub(super) fn check_resources(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for (c, _) in w.pod.all_containers() {
            let r = &c.resources;
            for (kind, map, key) in [
                ("requests", &r.requests, "cpu"),
                ("requests", &r.requests, "memory"),
                ("limits", &r.limits, "memory"),
            ] {
                if !map.contains_key(key) {
                    problems.push(format!(
                        "{} container {}: no resources.{kind}.{key}",
                        w.what, c.name
                    ));
                }
            }
        }
    }
    problems
}

/// Mounts name pod volumes; Secret and ConfigMap volumes name objects of this
/// directory; git-sidecar containers agree on the link; the link is on an
/// emptyDir that each web server mounts whole (no subPath) and read-only.
pub(super) fn check_volumes(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        pod_volume_problems(&m.objects, w, &mut problems);
        shared_volume_problems(w, &mut problems);
    }
    problems
}

fn pod_volume_problems(objects: &Objects, w: &Workload, problems: &mut Vec<String>) {
    for (c, _) in w.pod.all_containers() {
        for mount in &c.volume_mounts {
            if w.pod.volume(&mount.name).is_none() {
                problems.push(format!(
                    "{} container {}: mounts undefined volume {:?}",
                    w.what, c.name, mount.name
                ));
            }
        }
    }
    for v in &w.pod.volumes {
        if let Some(s) = v
            .secret
            .as_ref()
            .filter(|s| !objects.secrets.contains_key(&s.secret_name))
        {
            problems.push(format!(
                "{}: Secret {:?} is not defined here",
                w.what, s.secret_name
            ));
        }
        if let Some(c) = v
            .config_map
            .as_ref()
            .filter(|c| !objects.config_maps.contains_key(&c.name))
        {
            problems.push(format!(
                "{}: ConfigMap {:?} is not defined here",
                w.what, c.name
            ));
        }
    }
}

fn shared_volume_problems(w: &Workload, problems: &mut Vec<String>) {
    let links: BTreeSet<Option<String>> = w
        .pod
        .all_containers()
        .filter(|(c, _)| c.is_git_sidecar())
        .map(|(c, _)| c.link_path())
        .collect();
    if links.len() > 1 {
        problems.push(format!(
            "{}: git-sidecar containers publish different links: {links:?}",
            w.what
        ));
    }
    let web: Vec<&Container> = w
        .pod
        .containers
        .iter()
        .filter(|c| c.web_server().is_some())
        .collect();
    if web.is_empty() {
        return;
    }
    let Some((volume, _)) = w.pod.published_volume() else {
        problems.push(format!(
            "{}: no running git-sidecar publishes a link on a mounted volume",
            w.what
        ));
        return;
    };
    if w.pod.volume(&volume).is_some_and(|v| v.empty_dir.is_none()) {
        problems.push(format!(
            "{}: the shared volume {volume:?} is not an emptyDir",
            w.what
        ));
    }
    for c in web {
        let at = format!("{} container {}", w.what, c.name);
        match c.mount_of(&volume) {
            None => problems.push(format!("{at}: does not mount the shared volume {volume:?}")),
            Some(mount) if mount.sub_path.is_some() || mount.sub_path_expr.is_some() => problems
                .push(format!(
                    "{at}: mounts {volume:?} with a subPath, which resolves the link once, at start"
                )),
            Some(mount) if mount.read_only != Some(true) => problems.push(format!(
                "{at}: mounts {volume:?} writable; the web server only reads"
            )),
            Some(_) => {}
        }
    }
}

/// Values of a container's args (`--flag=value` or a separate word) and env.
fn setting_values(c: &Container) -> Vec<String> {
    let args = c.args.iter().filter_map(|a| match a.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => Some(value.to_string()),
        _ if !a.starts_with('-') => Some(a.clone()),
        _ => None,
    });
    let env = c.env.iter().filter_map(|e| e.value.clone());
    args.chain(env).collect()
}

/// Files git-sidecar is pointed at inside a Secret or ConfigMap volume are
/// keys of that object (a typo would only show when the pod starts).
pub(super) fn check_mounted_files(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for (c, _) in w.pod.all_containers().filter(|(c, _)| c.is_git_sidecar()) {
            for value in setting_values(c) {
                let Some((mount, rel)) = c.mount_for(&value) else {
                    continue;
                };
                let Some(volume) = w.pod.volume(&mount.name) else {
                    continue;
                };
                if volume.secret.is_none() && volume.config_map.is_none() {
                    continue;
                }
                if let Err(e) = m.objects.projected_file(volume, &rel) {
                    problems.push(format!("{} container {}: {value}: {e}", w.what, c.name));
                }
            }
        }
    }
    problems
}

/// kustomization.yaml, when present, lists exactly the manifests beside it.
pub(super) fn check_kustomization(m: &Model) -> Vec<String> {
    let Some(k) = &m.kustomization else {
        return Vec::new();
    };
    let mut listed: Vec<String> = k["resources"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    listed.sort();
    if listed == m.files {
        Vec::new()
    } else {
        vec![format!(
            "kustomization.yaml lists {listed:?}, the directory has {:?}",
            m.files
        )]
    }
}

/// Each PodMonitor selects pods of some variant, and in every pod it selects
/// its port names a serving container's port; on git-sidecar, the path is
/// /metrics and `--http-metrics` is on.
pub(super) fn check_pod_monitors(all: &[Model]) -> Vec<String> {
    let mut problems = Vec::new();
    for m in all {
        for pm in &m.objects.pod_monitors {
            let at = format!("{}/{}", m.name, pm.what);
            let selected: Vec<(&Model, &Workload)> = all
                .iter()
                .flat_map(|o| {
                    o.objects
                        .selected(&pm.spec.selector.match_labels)
                        .into_iter()
                        .map(move |w| (o, w))
                })
                .collect();
            if selected.is_empty() || pm.spec.pod_metrics_endpoints.is_empty() {
                problems.push(format!("{at}: selects no pod template or has no endpoint"));
            }
            for ep in &pm.spec.pod_metrics_endpoints {
                for (o, w) in &selected {
                    let target = format!("{}/{}", o.name, w.what);
                    pod_monitor_endpoint_problems(&at, ep, &target, &w.pod, &mut problems);
                }
            }
        }
    }
    problems
}

fn pod_monitor_endpoint_problems(
    at: &str,
    ep: &PodMetricsEndpoint,
    target: &str,
    pod: &PodSpec,
    problems: &mut Vec<String>,
) {
    let path = ep.path.as_deref().unwrap_or("/metrics");
    match pod.container_with_port(&PortRef::Name(ep.port.clone())) {
        None => problems.push(format!(
            "{at}: {target} has no container port named {:?}",
            ep.port
        )),
        Some(c) if c.is_git_sidecar() => {
            if !c.bool_setting("http-metrics") {
                problems.push(format!(
                    "{at}: git-sidecar in {target} runs without --http-metrics"
                ));
            }
            if path != "/metrics" {
                problems.push(format!("{at}: git-sidecar serves /metrics, not {path:?}"));
            }
        }
        Some(_) => {}
    }
}

// ---------------------------------------------------------------------------
// Web server configurations

/// One configuration file a web server container reads.
struct WebConfig {
    /// Where it comes from, for messages ("ConfigMap site-nginx default.conf").
    label: String,
    text: String,
}

/// The web servers' configs follow the published link (root/DocumentRoot is
/// the link, or inside it, as the web container sees it), allow that
/// symlink, cache no open files, and define the paths their probes use.
pub(super) fn check_web_configs(m: &Model) -> Vec<String> {
    let mut problems = Vec::new();
    for w in &m.objects.workloads {
        for c in &w.pod.containers {
            let Some(server) = c.web_server() else {
                continue;
            };
            let at = format!("{} container {}", w.what, c.name);
            let Some(link) = web_link(&w.pod, c) else {
                continue;
            }; // check_volumes says why
            let configs = match web_configs(m, &w.pod, c, server, &link) {
                Ok(configs) => configs,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let probe_paths = http_probe_paths(c);
            for config in configs {
                let found = match server {
                    WebServer::Nginx => nginx_problems(&config.text, &link, &probe_paths),
                    WebServer::Httpd => httpd_problems(&config.text, &link),
                };
                problems.extend(
                    found
                        .into_iter()
                        .map(|p| format!("{at}, {}: {p}", config.label)),
                );
            }
        }
    }
    problems
}

/// The published link as web server container `c` sees it.
fn web_link(pod: &PodSpec, c: &Container) -> Option<String> {
    let (volume, rel) = pod.published_volume()?;
    Some(join_path(&c.mount_of(&volume)?.mount_path, &rel))
}

/// Does web server `c` read its main configuration from the synced repository?
pub(super) fn config_from_repository(pod: &PodSpec, c: &Container) -> bool {
    let config = c
        .web_server()
        .and_then(|s| c.command_option(s.config_option()));
    match (config, web_link(pod, c)) {
        (Some(config), Some(link)) => under_link(&config, &link),
        _ => false,
    }
}

fn http_probe_paths(c: &Container) -> Vec<String> {
    c.probes()
        .iter()
        .filter_map(|(_, p)| p.and_then(|p| p.http_get.as_ref()))
        .map(|g| g.path.clone())
        .collect()
}

/// The configuration `c` runs with: the file given with `-c`/`-f` (from a
/// ConfigMap, or from the synced repository, whose example is in
/// `repo-example/`), else the `.conf` files of the ConfigMaps it mounts.
fn web_configs(
    m: &Model,
    pod: &PodSpec,
    c: &Container,
    server: WebServer,
    link: &str,
) -> Result<Vec<WebConfig>, String> {
    if let Some(path) = c.command_option(server.config_option()) {
        let text = config_file(m, pod, c, &path, link)?;
        return Ok(vec![WebConfig { label: path, text }]);
    }
    let mut configs = Vec::new();
    for mount in &c.volume_mounts {
        let Some(cm) = pod.volume(&mount.name).and_then(|v| v.config_map.as_ref()) else {
            continue;
        };
        for (key, text) in m.objects.config_maps.get(&cm.name).into_iter().flatten() {
            if key.ends_with(".conf") {
                let label = format!("ConfigMap {} {key}", cm.name);
                configs.push(WebConfig {
                    label,
                    text: text.clone(),
                });
            }
        }
    }
    if configs.is_empty() {
        return Err("no configuration found (no -c/-f and no mounted ConfigMap *.conf)".into());
    }
    Ok(configs)
}

fn config_file(
    m: &Model,
    pod: &PodSpec,
    c: &Container,
    path: &str,
    link: &str,
) -> Result<String, String> {
    if let Some(rel) = path.strip_prefix(&format!("{link}/")) {
        let file = m.dir.join("repo-example").join(rel);
        return fs::read_to_string(&file).map_err(|e| {
            format!(
                "{path} comes from the repository; its example {} is missing: {e}",
                file.display()
            )
        });
    }
    let (mount, rel) = c
        .mount_for(path)
        .ok_or_else(|| format!("{path} is on no mounted volume"))?;
    let volume = pod
        .volume(&mount.name)
        .ok_or_else(|| format!("{path}: no volume {:?}", mount.name))?;
    m.objects.projected_file(volume, &rel)
}

/// nginx statements (directive and arguments, quotes removed), comments dropped.
fn nginx_statements(text: &str) -> Vec<Vec<String>> {
    let mut code = String::new();
    for line in text.lines() {
        let mut in_quotes = false;
        for ch in line.chars() {
            match ch {
                '"' => in_quotes = !in_quotes,
                '#' if !in_quotes => break,
                _ => {}
            }
            code.push(ch);
        }
        code.push('\n');
    }
    code.split([';', '{', '}'])
        .map(|s| {
            s.split_whitespace()
                .map(|w| w.trim_matches('"').to_string())
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

fn under_link(path: &str, link: &str) -> bool {
    let path = path.trim_end_matches('/');
    path == link || path.starts_with(&format!("{link}/"))
}

fn nginx_problems(text: &str, link: &str, probe_paths: &[String]) -> Vec<String> {
    let statements = nginx_statements(text);
    let mut problems = Vec::new();
    let mut roots = 0;
    for s in &statements {
        let arg = s.get(1).map(String::as_str).unwrap_or_default();
        match s[0].as_str() {
            "open_file_cache" if arg != "off" => problems
                .push("open_file_cache keeps serving files of the previous commit".to_string()),
            "disable_symlinks" if arg == "on" && !s.iter().any(|w| w.starts_with("from=")) => {
                problems.push(
                    "disable_symlinks on (without from=$document_root) refuses the published link"
                        .to_string(),
                )
            }
            "root" | "alias" => {
                roots += 1;
                if !under_link(arg, link) {
                    problems.push(format!("{} {arg} is not the published link {link}", s[0]));
                }
            }
            _ => {}
        }
    }
    if roots == 0 {
        problems.push(format!(
            "no root directive; it must be the published link {link}"
        ));
    }
    for path in probe_paths.iter().filter(|p| *p != "/") {
        if !statements
            .iter()
            .any(|s| *s == ["location", "=", path.as_str()])
        {
            problems.push(format!("no `location = {path}` for the probe on {path}"));
        }
    }
    problems
}

/// httpd directives that cache files of the synced tree.
const HTTPD_CACHES: &[&str] = &["cacheenable", "mmapfile", "cachefile"];

fn httpd_problems(text: &str, link: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut directory: Option<String> = None;
    let mut document_roots = Vec::new();
    // The arguments of each Options line, by <Directory>.
    let mut options: Vec<(String, Vec<String>)> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches(['"', '<', '>']).to_string())
            .collect();
        let name = words[0].to_ascii_lowercase();
        let args = &words[1..];
        match name.as_str() {
            "directory" => directory = args.first().cloned(),
            "/directory" => directory = None,
            "documentroot" => document_roots.extend(args.first().cloned()),
            "options" => options.extend(directory.clone().map(|d| (d, args.to_vec()))),
            "loadmodule" if args.iter().any(|a| a.contains("cache")) => {
                problems.push(format!("{line}: no caching module on the synced tree"))
            }
            n if HTTPD_CACHES.contains(&n) => {
                problems.push(format!("{line}: caches files of the previous commit"))
            }
            _ => {}
        }
    }
    if document_roots.is_empty() {
        problems.push(format!(
            "no DocumentRoot; it must be the published link {link}"
        ));
    }
    for root in document_roots.iter().filter(|r| !under_link(r, link)) {
        problems.push(format!(
            "DocumentRoot {root} is not the published link {link}"
        ));
    }
    let parent = match link.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((parent, _)) => parent,
    };
    if !symlinks_allowed(&options, parent) {
        problems.push(format!(
            "the Options in effect for {parent}, which holds the link, refuse symlinks \
             (httpd checks a link against its directory's Options: FollowSymLinks or SymLinksIfOwnerMatch)"
        ));
    }
    problems
}

/// Whether the Options in effect for `dir` let httpd follow a symlink in it:
/// the <Directory> sections applying to it, merged shallowest first, from
/// httpd's default (which includes FollowSymLinks). `All` includes it; an
/// absolute Options line replaces what came before, `+`/`-` adjust it.
fn symlinks_allowed(options: &[(String, Vec<String>)], dir: &str) -> bool {
    let mut applying: Vec<&(String, Vec<String>)> = options
        .iter()
        .filter(|(d, _)| d == "/" || under_link(dir, d.trim_end_matches('/')))
        .collect();
    applying.sort_by_key(|(d, _)| d.len());
    let mut allowed = true;
    for (_, args) in applying {
        if args.iter().any(|a| !a.starts_with(['+', '-'])) {
            allowed = false;
        }
        for arg in args {
            let name = arg.trim_start_matches(['+', '-']).to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "followsymlinks" | "symlinksifownermatch" | "all"
            ) {
                allowed = !arg.starts_with('-');
            }
        }
    }
    allowed
}

// ---------------------------------------------------------------------------
// The checks on the shipped manifests

#[test]
fn every_manifest_passes_the_semantic_checks() {
    let variants = all_variants();
    let mut problems = Vec::new();
    let mut models = Vec::new();
    for v in &variants {
        let (m, found) = model(v);
        problems.extend(found.into_iter().map(|p| format!("{}: {p}", v.name)));
        problems.extend(
            all_problems(&m)
                .into_iter()
                .map(|p| format!("{}: {p}", v.name)),
        );
        models.push(m);
    }
    problems.extend(check_pod_monitors(&models));
    assert!(problems.is_empty(), "{problems:#?}");
    // The checks above look at something: each kind of object is there.
    let count = |f: fn(&Objects) -> usize| models.iter().map(|m| f(&m.objects)).sum::<usize>();
    assert!(count(|o| o.workloads.len()) >= 7, "workloads");
    assert!(count(|o| o.services.len()) >= 7, "services");
    assert!(count(|o| o.ingresses.len()) >= 1, "ingresses");
    assert!(count(|o| o.pod_monitors.len()) >= 1, "pod monitors");
}
