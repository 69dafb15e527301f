//! The Kubernetes manifests under `manifests/` (one directory per variant).
//!
//! * Every YAML document parses, and `kubernetes-validate --strict` accepts
//!   every manifest for Kubernetes 1.29 and 1.33 (the classic sidecar also
//!   for 1.25 and 1.28).
//! * Semantic checks a schema cannot make: `restartPolicy` only on init
//!   containers, probes on declared ports and on paths git-sidecar serves,
//!   Services, the Ingress and the PodMonitor wired to real ports and paths,
//!   hardened `securityContext`s, web server configs that follow the
//!   published link without caching open files.
//! * git-sidecar's own flag parser and configuration checks accept every
//!   container's `args`, except the variants that need flags still pending,
//!   whose refusal must name exactly those flags.
//! * Real programs on 127.0.0.1 run with the manifests' own settings: the
//!   built binary answers every probe, the Ingress's webhook path and the
//!   PodMonitor's scrape path; nginx and httpd serve the published link from
//!   the shipped configs and switch commits without a reload.
//!
//! Each semantic check has a negative test that breaks a copy of a manifest.
//!
//! This file loads the manifests into a typed model (only the fields the
//! checks read) with the helpers that read containers; the submodules hold
//! the checks and the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

mod breakages;
mod checks;
mod kubernetes_validate;
mod outage;
mod pod_fs;
mod programs;
mod sidecar_config;

use checks::*;
use pod_fs::*;

/// `manifests/` in the source tree.
fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// Variants that use git-sidecar flags which are parsed but refused as "not
/// supported yet", with exactly the flags the refusal must name. When one
/// starts to be accepted, the test fails: move the variant out of here and
/// update manifests/README.md.
const PENDING: &[(&str, &[&str])] = &[];

fn pending_flags(variant: &str) -> Option<&'static [&'static str]> {
    PENDING
        .iter()
        .find(|(name, _)| *name == variant)
        .map(|(_, flags)| *flags)
}

// ---------------------------------------------------------------------------
// Loading

/// One directory of manifests, as YAML values (negative tests edit them).
#[derive(Clone)]
struct Variant {
    name: String,
    dir: PathBuf,
    /// Every non-empty document of every manifest but kustomization.yaml.
    docs: Vec<Doc>,
    /// kustomization.yaml, when present.
    kustomization: Option<Value>,
    /// The manifest files (kustomization.yaml excluded), sorted.
    files: Vec<String>,
}

#[derive(Clone)]
struct Doc {
    file: String,
    value: Value,
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Every document of `path`; panics naming the file when one does not parse.
fn parse_documents(path: &Path) -> Vec<Value> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| is_yaml(n))
        .collect();
    names.sort();
    names
}

fn load_variant(dir: &Path) -> Variant {
    let mut variant = Variant {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: dir.to_path_buf(),
        docs: Vec::new(),
        kustomization: None,
        files: Vec::new(),
    };
    for file in yaml_files(dir) {
        let docs = parse_documents(&dir.join(&file));
        if file == "kustomization.yaml" {
            variant.kustomization = docs.into_iter().next();
            continue;
        }
        variant.docs.extend(docs.into_iter().map(|value| Doc {
            file: file.clone(),
            value,
        }));
        variant.files.push(file);
    }
    variant
}

/// Every variant directory under manifests/, sorted by name.
fn all_variants() -> Vec<Variant> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(manifests_dir())
        .expect("listing manifests/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let variants: Vec<Variant> = dirs.iter().map(|d| load_variant(d)).collect();
    assert!(
        variants.len() >= 7,
        "expected the variant directories under {}",
        manifests_dir().display()
    );
    variants
}

fn variant(name: &str) -> Variant {
    load_variant(&manifests_dir().join(name))
}

// ---------------------------------------------------------------------------
// The typed model: only the fields the checks read.

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: String,
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct DeploymentDoc {
    metadata: Meta,
    spec: DeploymentSpec,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct DeploymentSpec {
    template: PodTemplate,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct PodTemplate {
    metadata: Meta,
    spec: PodSpec,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct PodSpec {
    containers: Vec<Container>,
    init_containers: Vec<Container>,
    volumes: Vec<Volume>,
    security_context: PodSecurityContext,
    automount_service_account_token: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct PodSecurityContext {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i64>,
    seccomp_profile: Option<Seccomp>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Container {
    name: String,
    image: String,
    command: Vec<String>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    ports: Vec<ContainerPort>,
    startup_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    liveness_probe: Option<Probe>,
    restart_policy: Option<String>,
    security_context: Option<SecurityContext>,
    volume_mounts: Vec<VolumeMount>,
    resources: Resources,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct EnvVar {
    name: String,
    value: Option<String>,
    value_from: Option<Value>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ContainerPort {
    name: Option<String>,
    container_port: u16,
}

/// A port given by number or by name (Kubernetes' IntOrString).
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
enum PortRef {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Probe {
    http_get: Option<HttpGet>,
    tcp_socket: Option<TcpSocket>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct HttpGet {
    #[serde(default)]
    path: String,
    port: PortRef,
}

#[derive(Deserialize, Clone, Debug)]
struct TcpSocket {
    port: PortRef,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct SecurityContext {
    run_as_non_root: Option<bool>,
    run_as_user: Option<i64>,
    read_only_root_filesystem: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    privileged: Option<bool>,
    capabilities: Capabilities,
    seccomp_profile: Option<Seccomp>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct Capabilities {
    add: Vec<String>,
    drop: Vec<String>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Seccomp {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct Resources {
    requests: BTreeMap<String, Value>,
    limits: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Volume {
    name: String,
    empty_dir: Option<Value>,
    secret: Option<SecretVolume>,
    config_map: Option<ConfigMapVolume>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct SecretVolume {
    secret_name: String,
    items: Vec<KeyToPath>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct ConfigMapVolume {
    name: String,
    items: Vec<KeyToPath>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct KeyToPath {
    key: String,
    path: String,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct VolumeMount {
    name: String,
    mount_path: String,
    sub_path: Option<String>,
    sub_path_expr: Option<String>,
    read_only: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ServiceDoc {
    metadata: Meta,
    spec: ServiceSpec,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct ServiceSpec {
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    publish_not_ready_addresses: Option<bool>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    #[serde(default)]
    name: Option<String>,
    port: u16,
    #[serde(default)]
    target_port: Option<PortRef>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct IngressDoc {
    metadata: Meta,
    spec: IngressSpec,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct IngressSpec {
    rules: Vec<IngressRule>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct IngressRule {
    http: IngressHttp,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct IngressHttp {
    paths: Vec<IngressPath>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct IngressPath {
    #[serde(default)]
    path: String,
    backend: IngressBackend,
}

#[derive(Deserialize, Clone, Debug)]
struct IngressBackend {
    service: IngressService,
}

#[derive(Deserialize, Clone, Debug)]
struct IngressService {
    name: String,
    port: IngressServicePort,
}

#[derive(Deserialize, Clone, Debug)]
struct IngressServicePort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    number: Option<u16>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct PodMonitorDoc {
    metadata: Meta,
    spec: PodMonitorSpec,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct PodMonitorSpec {
    selector: LabelSelector,
    pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct LabelSelector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
struct PodMetricsEndpoint {
    port: String,
    path: Option<String>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(rename_all = "camelCase", default)]
struct DataDoc {
    metadata: Meta,
    data: BTreeMap<String, String>,
    string_data: BTreeMap<String, String>,
}

/// A pod template and where it came from.
#[derive(Clone, Debug)]
struct Workload {
    /// "deployment.yaml: Deployment site", for messages.
    what: String,
    labels: BTreeMap<String, String>,
    pod: PodSpec,
}

/// A named object and where it came from.
#[derive(Clone, Debug)]
struct Named<T> {
    name: String,
    what: String,
    spec: T,
}

/// The objects of one variant, typed.
#[derive(Clone, Debug, Default)]
struct Objects {
    workloads: Vec<Workload>,
    services: Vec<Named<ServiceSpec>>,
    ingresses: Vec<Named<IngressSpec>>,
    pod_monitors: Vec<Named<PodMonitorSpec>>,
    /// ConfigMap data by name.
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret contents by name (`stringData`; `data` keys are present with a
    /// placeholder value: nothing here needs the decoded bytes).
    secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// A variant's objects plus what the checks need from its directory.
struct Model {
    name: String,
    dir: PathBuf,
    files: Vec<String>,
    kustomization: Option<Value>,
    objects: Objects,
}

fn typed<T: for<'de> Deserialize<'de>>(doc: &Doc, problems: &mut Vec<String>) -> Option<T> {
    serde_yaml_ng::from_value(doc.value.clone())
        .map_err(|e| problems.push(format!("{}: {e}", doc.file)))
        .ok()
}

fn add_doc(objects: &mut Objects, doc: &Doc, problems: &mut Vec<String>) {
    let kind = doc.value["kind"].as_str().unwrap_or_default();
    let what = |name: &str| format!("{}: {kind} {name}", doc.file);
    match kind {
        "Deployment" => {
            if let Some(d) = typed::<DeploymentDoc>(doc, problems) {
                objects.workloads.push(Workload {
                    what: what(&d.metadata.name),
                    labels: d.spec.template.metadata.labels,
                    pod: d.spec.template.spec,
                });
            }
        }
        "Service" => {
            if let Some(s) = typed::<ServiceDoc>(doc, problems) {
                objects
                    .services
                    .push(named(what(&s.metadata.name), s.metadata, s.spec));
            }
        }
        "Ingress" => {
            if let Some(i) = typed::<IngressDoc>(doc, problems) {
                objects
                    .ingresses
                    .push(named(what(&i.metadata.name), i.metadata, i.spec));
            }
        }
        "PodMonitor" => {
            if let Some(p) = typed::<PodMonitorDoc>(doc, problems) {
                let w = what(&p.metadata.name);
                objects.pod_monitors.push(named(w, p.metadata, p.spec));
            }
        }
        "ConfigMap" => {
            if let Some(c) = typed::<DataDoc>(doc, problems) {
                objects.config_maps.insert(c.metadata.name, c.data);
            }
        }
        "Secret" => {
            if let Some(s) = typed::<DataDoc>(doc, problems) {
                let mut content = s.string_data;
                for key in s.data.keys() {
                    content.insert(key.clone(), "placeholder".to_string());
                }
                objects.secrets.insert(s.metadata.name, content);
            }
        }
        other => problems.push(format!(
            "{}: unexpected kind {other:?} (a typo, or a kind the checks do not know yet)",
            doc.file
        )),
    }
}

fn named<T>(what: String, meta: Meta, spec: T) -> Named<T> {
    Named {
        name: meta.name,
        what,
        spec,
    }
}

/// The typed model of `v`, and the problems met building it.
fn model(v: &Variant) -> (Model, Vec<String>) {
    let mut problems = Vec::new();
    let mut objects = Objects::default();
    for doc in &v.docs {
        add_doc(&mut objects, doc, &mut problems);
    }
    let model = Model {
        name: v.name.clone(),
        dir: v.dir.clone(),
        files: v.files.clone(),
        kustomization: v.kustomization.clone(),
        objects,
    };
    (model, problems)
}

/// The model of `v`; panics when it cannot be built.
fn model_of(v: &Variant) -> Model {
    let (m, problems) = model(v);
    assert!(problems.is_empty(), "{}: {problems:#?}", v.name);
    m
}

// ---------------------------------------------------------------------------
// Reading containers

/// The web servers the manifests pair git-sidecar with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WebServer {
    Nginx,
    Httpd,
}

impl WebServer {
    /// The command-line option naming the main configuration file.
    fn config_option(self) -> &'static str {
        match self {
            WebServer::Nginx => "-c",
            WebServer::Httpd => "-f",
        }
    }
}

/// The paths git-sidecar serves that a probe may use, besides the webhook path.
const SIDECAR_PROBE_PATHS: &[&str] = &["/readyz", "/livez"];
const DEFAULT_WEBHOOK_PATH: &str = "/webhook";

impl Container {
    fn is_git_sidecar(&self) -> bool {
        self.image.contains("git-sidecar")
    }

    fn web_server(&self) -> Option<WebServer> {
        if self.image.contains("nginx") {
            Some(WebServer::Nginx)
        } else if self.image.contains("httpd") {
            Some(WebServer::Httpd)
        } else {
            None
        }
    }

    /// A git-sidecar setting: the last `--flag=value` / `--flag value` in
    /// `args` (`"true"` for a bare boolean flag), else its `GITSYNC_*` variable.
    fn setting(&self, flag: &str) -> Option<String> {
        let long = format!("--{flag}");
        let mut found = None;
        for (i, arg) in self.args.iter().enumerate() {
            if let Some(value) = arg.strip_prefix(&format!("{long}=")) {
                found = Some(value.to_string());
            } else if *arg == long {
                found = match self.args.get(i + 1) {
                    Some(next) if !next.starts_with('-') => Some(next.clone()),
                    _ => Some("true".to_string()),
                };
            }
        }
        found.or_else(|| self.env_value(&env_name(flag)))
    }

    fn bool_setting(&self, flag: &str) -> bool {
        self.setting(flag)
            .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "t" | "T" | "TRUE" | "True"))
    }

    fn env_value(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rfind(|e| e.name == name)
            .and_then(|e| e.value.clone())
    }

    fn has_env(&self, name: &str) -> bool {
        self.env.iter().any(|e| e.name == name)
    }

    /// The port git-sidecar's `--http-bind` listens on.
    fn http_bind_port(&self) -> Option<Result<u16, String>> {
        let bind = self.setting("http-bind")?;
        let port = bind.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        Some(port.parse().map_err(|_| bind))
    }

    fn webhook_path(&self) -> String {
        self.setting("incoming-webhook-path")
            .unwrap_or_else(|| DEFAULT_WEBHOOK_PATH.to_string())
    }

    /// Where the published link is, as this git-sidecar container sees it.
    fn link_path(&self) -> Option<String> {
        let root = self.setting("root")?;
        let link = match self.setting("link") {
            Some(link) => link,
            None => default_link(&self.setting("repo")?),
        };
        if link.starts_with('/') {
            Some(link)
        } else {
            Some(format!("{}/{link}", root.trim_end_matches('/')))
        }
    }

    /// The number of the declared port `port` refers to.
    fn port_number(&self, port: &PortRef) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| match port {
                PortRef::Number(n) => p.container_port == *n,
                PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
            })
            .map(|p| p.container_port)
    }

    fn probes(&self) -> [(&'static str, Option<&Probe>); 3] {
        [
            ("startupProbe", self.startup_probe.as_ref()),
            ("readinessProbe", self.readiness_probe.as_ref()),
            ("livenessProbe", self.liveness_probe.as_ref()),
        ]
    }

    /// The mount holding `path` (the deepest one) and `path` relative to it.
    fn mount_for(&self, path: &str) -> Option<(&VolumeMount, String)> {
        self.volume_mounts
            .iter()
            .filter_map(|m| {
                let mount = m.mount_path.trim_end_matches('/');
                let rest = path.strip_prefix(mount)?;
                let rel = match rest.strip_prefix('/') {
                    Some(rel) => rel,
                    None if rest.is_empty() => "",
                    None => return None,
                };
                Some((m, rel.to_string()))
            })
            .max_by_key(|(m, _)| m.mount_path.len())
    }

    fn mount_of(&self, volume: &str) -> Option<&VolumeMount> {
        self.volume_mounts.iter().find(|m| m.name == volume)
    }

    /// The value following `option` on the command line (`command` + `args`).
    fn command_option(&self, option: &str) -> Option<String> {
        let line: Vec<&String> = self.command.iter().chain(&self.args).collect();
        line.windows(2)
            .find(|w| w[0] == option)
            .map(|w| w[1].clone())
    }
}

/// git-sync's default `--link`: the last path element of the repository.
fn default_link(repo: &str) -> String {
    let last = repo
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default();
    last.trim_end_matches(".git").to_string()
}

/// `incoming-webhook-path` → `GITSYNC_INCOMING_WEBHOOK_PATH`.
fn env_name(flag: &str) -> String {
    format!("GITSYNC_{}", flag.to_uppercase().replace('-', "_"))
}

fn join_path(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.trim_end_matches('/').to_string()
    } else {
        format!("{}/{rel}", base.trim_end_matches('/'))
    }
}

impl PodSpec {
    /// Every container with whether it is an init container.
    fn all_containers(&self) -> impl Iterator<Item = (&Container, bool)> {
        self.init_containers
            .iter()
            .map(|c| (c, true))
            .chain(self.containers.iter().map(|c| (c, false)))
    }

    /// Containers that run for the pod's lifetime: regular ones and native sidecars.
    fn serving_containers(&self) -> impl Iterator<Item = &Container> {
        self.all_containers()
            .filter(|(c, init)| !init || c.restart_policy.as_deref() == Some("Always"))
            .map(|(c, _)| c)
    }

    /// git-sidecar containers that keep syncing (not a `--one-time` init clone).
    fn running_sidecars(&self) -> impl Iterator<Item = &Container> {
        self.serving_containers()
            .filter(|c| c.is_git_sidecar() && !c.bool_setting("one-time"))
    }

    fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// A serving container that declares `port`, by name or number.
    fn container_with_port(&self, port: &PortRef) -> Option<&Container> {
        self.serving_containers()
            .find(|c| c.port_number(port).is_some())
    }

    /// The shared volume holding the published link and the link relative to it.
    fn published_volume(&self) -> Option<(String, String)> {
        let sidecar = self.running_sidecars().next()?;
        let link = sidecar.link_path()?;
        let (mount, rel) = sidecar.mount_for(&link)?;
        let rel = match &mount.sub_path {
            Some(sub) => join_path(sub, &rel),
            None => rel,
        };
        Some((mount.name.clone(), rel))
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Objects {
    fn selected(&self, selector: &BTreeMap<String, String>) -> Vec<&Workload> {
        self.workloads
            .iter()
            .filter(|w| selects(selector, &w.labels))
            .collect()
    }

    fn service(&self, name: &str) -> Option<&Named<ServiceSpec>> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The content of `key` in the Secret or ConfigMap `volume` projects.
    fn projected_file(&self, volume: &Volume, file: &str) -> Result<String, String> {
        let (kind, name, items, data) = if let Some(s) = &volume.secret {
            (
                "Secret",
                &s.secret_name,
                &s.items,
                self.secrets.get(&s.secret_name),
            )
        } else if let Some(c) = &volume.config_map {
            (
                "ConfigMap",
                &c.name,
                &c.items,
                self.config_maps.get(&c.name),
            )
        } else {
            return Err(format!("volume {:?} projects no files", volume.name));
        };
        let data = data.ok_or_else(|| format!("{kind} {name} is not defined in this directory"))?;
        let key = match items.iter().find(|i| i.path == file) {
            Some(item) => item.key.as_str(),
            None if items.is_empty() => file,
            None => return Err(format!("{file:?} is not among the items of {kind} {name}")),
        };
        data.get(key)
            .cloned()
            .ok_or_else(|| format!("{key:?} is not a key of {kind} {name}"))
    }
}
