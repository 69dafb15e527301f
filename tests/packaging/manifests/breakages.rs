//! Negative tests of the semantic checks: each breaks a copy of a shipped
//! manifest in one way (as YAML, before the typed model is built) and
//! expects the check in question to name the problem, having found none in
//! the intact copy.

use super::*;

/// The YAML of `text`.
pub(super) fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML")
}

/// The `index`-th document of `file` in `v`.
fn doc_mut<'a>(v: &'a mut Variant, file: &str, index: usize) -> &'a mut Value {
    v.docs
        .iter_mut()
        .filter(|d| d.file == file)
        .nth(index)
        .map(|d| &mut d.value)
        .unwrap_or_else(|| panic!("no document {index} in {file}"))
}

/// The node at a path ("spec/template/spec/containers/0").
pub(super) fn node<'a>(root: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('/')
        .fold(root, |v, key| match key.parse::<usize>() {
            Ok(i) if v.is_sequence() => &mut v[i],
            _ => v
                .get_mut(key)
                .unwrap_or_else(|| panic!("no {key:?} on the way to {path}")),
        })
}

/// `path`'s parent node and last key.
fn parent_of<'a>(root: &'a mut Value, path: &'a str) -> (&'a mut Value, &'a str) {
    match path.rsplit_once('/') {
        Some((parent, key)) => (node(root, parent), key),
        None => (root, path),
    }
}

/// Sets (or adds) the last key of `path`.
fn set(root: &mut Value, path: &str, value: Value) {
    let (parent, key) = parent_of(root, path);
    match key.parse::<usize>() {
        Ok(i) if parent.is_sequence() => parent[i] = value,
        _ => {
            let map = parent.as_mapping_mut().expect("a mapping");
            map.insert(Value::String(key.to_string()), value);
        }
    }
}

fn remove(root: &mut Value, path: &str) {
    let (parent, key) = parent_of(root, path);
    let map = parent.as_mapping_mut().expect("a mapping");
    assert!(map.remove(key).is_some(), "nothing to remove at {path}");
}

/// Replaces `from` with `to` in the string at `path` (which must contain it).
fn edit_str(root: &mut Value, path: &str, from: &str, to: &str) {
    let value = node(root, path);
    let text = value.as_str().expect("a string").to_string();
    assert!(text.contains(from), "{path} does not contain {from:?}");
    *value = Value::String(text.replace(from, to));
}

/// Replaces the list item `from` (an argument, a command word) at `path`.
fn replace_item(root: &mut Value, path: &str, from: &str, to: &str) {
    let items = node(root, path).as_sequence_mut().expect("a list");
    let item = items
        .iter_mut()
        .find(|a| a.as_str() == Some(from))
        .unwrap_or_else(|| panic!("{path} has no {from:?}"));
    *item = yaml(to);
}

const POD: &str = "spec/template/spec";
pub(super) const SIDECAR: &str = "spec/template/spec/initContainers/0";
const NGINX: &str = "spec/template/spec/containers/0";

/// One way to break a manifest, and what the check must then say.
struct Breakage {
    what: &'static str,
    variant: &'static str,
    edit: fn(&mut Variant),
    check: Check,
    expect: &'static str,
}

pub(super) fn deployment(v: &mut Variant) -> &mut Value {
    doc_mut(v, "deployment.yaml", 0)
}

const BREAKAGES: &[Breakage] = &[
    Breakage {
        what: "restartPolicy on a regular container",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/restartPolicy"),
                yaml("Always"),
            )
        },
        check: check_restart_policy,
        expect: "only valid on init containers",
    },
    Breakage {
        what: "restartPolicy OnFailure on an init container",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{SIDECAR}/restartPolicy"),
                yaml("OnFailure"),
            )
        },
        check: check_restart_policy,
        expect: "only \"Always\" is valid",
    },
    Breakage {
        what: "a probe on a port name the container does not declare",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/readinessProbe/httpGet/port"),
                yaml("htp"),
            )
        },
        check: check_probe_ports,
        expect: "readinessProbe port \"htp\" is not a declared containerPort",
    },
    Breakage {
        what: "a probe on a port number the container does not declare",
        variant: "httpd",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/livenessProbe/tcpSocket/port"),
                yaml("80"),
            )
        },
        check: check_probe_ports,
        expect: "livenessProbe port 80 is not a declared containerPort",
    },
    Breakage {
        what: "a git-sidecar probe on a path it does not serve",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{SIDECAR}/readinessProbe/httpGet/path"),
                yaml("/healthz"),
            )
        },
        check: check_sidecar_http,
        expect: "path \"/healthz\" is not served by git-sidecar",
    },
    Breakage {
        what: "a probe on /metrics without --http-metrics",
        variant: "native-sidecar",
        edit: |v| {
            let d = deployment(v);
            set(
                d,
                &format!("{SIDECAR}/readinessProbe/httpGet/path"),
                yaml("/metrics"),
            );
            let args = node(d, &format!("{SIDECAR}/args"))
                .as_sequence_mut()
                .expect("args");
            args.retain(|a| a.as_str() != Some("--http-metrics"));
        },
        check: check_sidecar_http,
        expect: "path \"/metrics\" is not served by git-sidecar",
    },
    Breakage {
        what: "liveness on /readyz (a forge outage would restart the pod)",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{SIDECAR}/livenessProbe/httpGet/path"),
                yaml("/readyz"),
            )
        },
        check: check_sidecar_http,
        expect: "livenessProbe on \"/readyz\"; use /livez",
    },
    Breakage {
        what: "a native sidecar without a startupProbe",
        variant: "native-sidecar",
        edit: |v| remove(deployment(v), &format!("{SIDECAR}/startupProbe")),
        check: check_sidecar_http,
        expect: "needs a startupProbe",
    },
    Breakage {
        what: "a classic sidecar without a readinessProbe",
        variant: "classic-sidecar",
        edit: |v| {
            remove(
                deployment(v),
                "spec/template/spec/containers/1/readinessProbe",
            )
        },
        check: check_sidecar_http,
        expect: "no readinessProbe",
    },
    Breakage {
        what: "--http-bind on a port that is not the containerPort",
        variant: "native-sidecar",
        edit: |v| {
            replace_item(
                deployment(v),
                &format!("{SIDECAR}/args"),
                "--http-bind=:8081",
                "--http-bind=:9090",
            );
        },
        check: check_sidecar_http,
        expect: "--http-bind port 9090 is not a declared containerPort",
    },
    Breakage {
        what: "a git-sidecar probe on another declared port than --http-bind's",
        variant: "native-sidecar",
        edit: |v| {
            let d = deployment(v);
            let ports = node(d, &format!("{SIDECAR}/ports"))
                .as_sequence_mut()
                .expect("ports");
            ports.push(yaml("{name: other, containerPort: 9000}"));
            set(
                d,
                &format!("{SIDECAR}/readinessProbe/httpGet/port"),
                yaml("other"),
            );
        },
        check: check_sidecar_http,
        expect: "readinessProbe port 9000 is not --http-bind's port 8081",
    },
    Breakage {
        what: "a Service targetPort no container declares",
        variant: "native-sidecar",
        edit: |v| {
            set(
                doc_mut(v, "service.yaml", 0),
                "spec/ports/0/targetPort",
                yaml("htp"),
            )
        },
        check: check_services,
        expect: "targetPort \"htp\" is not a port of a serving container",
    },
    Breakage {
        what: "a Service targetPort on the one-shot init container",
        variant: "classic-sidecar",
        edit: |v| {
            let d = deployment(v);
            let ports = node(d, "spec/template/spec/initContainers/0")
                .as_mapping_mut()
                .expect("init");
            ports.insert(yaml("ports"), yaml("[{name: clone, containerPort: 7000}]"));
            set(
                doc_mut(v, "service.yaml", 1),
                "spec/ports/0/targetPort",
                yaml("clone"),
            );
        },
        check: check_services,
        expect: "targetPort \"clone\" is not a port of a serving container",
    },
    Breakage {
        what: "a Service selecting no pod",
        variant: "native-sidecar",
        edit: |v| {
            set(
                doc_mut(v, "service.yaml", 1),
                "spec/selector",
                yaml("{app: other}"),
            )
        },
        check: check_services,
        expect: "matches no pod template",
    },
    Breakage {
        what: "an Ingress path other than --incoming-webhook-path",
        variant: "webhook",
        edit: |v| {
            set(
                doc_mut(v, "ingress.yaml", 0),
                "spec/rules/0/http/paths/0/path",
                yaml("/hooks"),
            )
        },
        check: check_ingresses,
        expect:
            "path \"/hooks\" reaches git-sidecar, whose --incoming-webhook-path is \"/webhook\"",
    },
    Breakage {
        what: "an Ingress backend Service that does not exist",
        variant: "webhook",
        edit: |v| {
            let path = "spec/rules/0/http/paths/0/backend/service/name";
            set(doc_mut(v, "ingress.yaml", 0), path, yaml("site-sidecar"));
        },
        check: check_ingresses,
        expect: "backend Service \"site-sidecar\" is not defined here",
    },
    Breakage {
        what: "an Ingress port the Service does not have",
        variant: "webhook",
        edit: |v| {
            let path = "spec/rules/0/http/paths/0/backend/service/port";
            set(doc_mut(v, "ingress.yaml", 0), path, yaml("{number: 80}"));
        },
        check: check_ingresses,
        expect: "Service site-git-sidecar has no port",
    },
    Breakage {
        what: "a peers' Service with a cluster IP",
        variant: "replicas",
        edit: |v| remove(doc_mut(v, "service.yaml", 2), "spec/clusterIP"),
        check: check_peers,
        expect: "must be headless",
    },
    Breakage {
        what: "a peers' Service listing pods that are not ready",
        variant: "replicas",
        edit: |v| {
            set(
                doc_mut(v, "service.yaml", 2),
                "spec/publishNotReadyAddresses",
                yaml("true"),
            )
        },
        check: check_peers,
        expect: "publishNotReadyAddresses: true",
    },
    Breakage {
        what: "--peers on another port than --http-bind",
        variant: "replicas",
        edit: |v| {
            replace_item(
                deployment(v),
                &format!("{SIDECAR}/args"),
                "--peers=site-peers:8081",
                "--peers=site-peers:80",
            )
        },
        check: check_peers,
        expect: "--peers port 80 is not git-sidecar's --http-bind port (8081)",
    },
    Breakage {
        what: "--peers naming a Service that is not there",
        variant: "replicas",
        edit: |v| {
            set(
                doc_mut(v, "service.yaml", 2),
                "metadata/name",
                yaml("site-replicas"),
            )
        },
        check: check_peers,
        expect: "--peers names Service \"site-peers\", not defined here",
    },
    Breakage {
        what: "a webhook behind an Ingress without a secret",
        variant: "webhook",
        edit: |v| {
            let args = node(deployment(v), &format!("{SIDECAR}/args"))
                .as_sequence_mut()
                .expect("args");
            args.retain(|a| {
                !a.as_str()
                    .unwrap_or_default()
                    .starts_with("--incoming-webhook-secret-file")
            });
        },
        check: check_ingresses,
        expect: "has no webhook secret",
    },
    Breakage {
        what: "a ServiceAccount token mounted",
        variant: "native-sidecar",
        edit: |v| {
            remove(
                deployment(v),
                &format!("{POD}/automountServiceAccountToken"),
            )
        },
        check: check_hardening,
        expect: "automountServiceAccountToken: false",
    },
    Breakage {
        what: "a writable root filesystem",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/securityContext/readOnlyRootFilesystem"),
                yaml("false"),
            )
        },
        check: check_hardening,
        expect: "container nginx: readOnlyRootFilesystem is not true",
    },
    Breakage {
        what: "privilege escalation allowed (by omission)",
        variant: "native-sidecar",
        edit: |v| {
            remove(
                deployment(v),
                &format!("{SIDECAR}/securityContext/allowPrivilegeEscalation"),
            )
        },
        check: check_hardening,
        expect: "container git-sidecar: allowPrivilegeEscalation is not false",
    },
    Breakage {
        what: "capabilities not dropped",
        variant: "httpd",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/securityContext/capabilities/drop"),
                yaml("[NET_RAW]"),
            )
        },
        check: check_hardening,
        expect: "capabilities.drop does not contain ALL",
    },
    Breakage {
        what: "a capability added",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/securityContext/capabilities/add"),
                yaml("[NET_BIND_SERVICE]"),
            )
        },
        check: check_hardening,
        expect: "adds capabilities",
    },
    Breakage {
        what: "no seccomp profile",
        variant: "native-sidecar",
        edit: |v| {
            remove(
                deployment(v),
                &format!("{POD}/securityContext/seccompProfile"),
            )
        },
        check: check_hardening,
        expect: "no seccompProfile RuntimeDefault",
    },
    Breakage {
        what: "runAsNonRoot not set",
        variant: "config-reload",
        edit: |v| {
            remove(
                deployment(v),
                &format!("{POD}/securityContext/runAsNonRoot"),
            )
        },
        check: check_hardening,
        expect: "runAsNonRoot is not true",
    },
    Breakage {
        what: "a container running as root",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/securityContext/runAsUser"),
                yaml("0"),
            )
        },
        check: check_hardening,
        expect: "container nginx: runs as UID 0",
    },
    Breakage {
        what: "no memory limit",
        variant: "native-sidecar",
        edit: |v| remove(deployment(v), &format!("{NGINX}/resources/limits")),
        check: check_resources,
        expect: "container nginx: no resources.limits.memory",
    },
    Breakage {
        what: "the content mounted with a subPath",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/volumeMounts/0/subPath"),
                yaml("site"),
            )
        },
        check: check_volumes,
        expect: "with a subPath",
    },
    Breakage {
        what: "the content mounted writable in the web server",
        variant: "httpd",
        edit: |v| {
            set(
                deployment(v),
                &format!("{NGINX}/volumeMounts/0/readOnly"),
                yaml("false"),
            )
        },
        check: check_volumes,
        expect: "mounts \"content\" writable",
    },
    Breakage {
        what: "the shared volume not an emptyDir",
        variant: "native-sidecar",
        edit: |v| {
            set(
                deployment(v),
                &format!("{POD}/volumes/0"),
                yaml("{name: content, persistentVolumeClaim: {claimName: site}}"),
            )
        },
        check: check_volumes,
        expect: "is not an emptyDir",
    },
    Breakage {
        what: "a ConfigMap the pod mounts is not defined",
        variant: "native-sidecar",
        edit: |v| {
            set(
                doc_mut(v, "nginx-config.yaml", 0),
                "metadata/name",
                yaml("other"),
            )
        },
        check: check_volumes,
        expect: "ConfigMap \"site-nginx\" is not defined here",
    },
    Breakage {
        what: "the init clone publishing another link than the sidecar",
        variant: "classic-sidecar",
        edit: |v| {
            replace_item(
                deployment(v),
                &format!("{SIDECAR}/args"),
                "--link=site",
                "--link=www",
            );
        },
        check: check_volumes,
        expect: "publish different links",
    },
    Breakage {
        what: "a file flag naming a key the Secret does not have",
        variant: "private-https",
        edit: |v| {
            replace_item(
                deployment(v),
                &format!("{SIDECAR}/args"),
                "--password-file=/etc/git-secret/token",
                "--password-file=/etc/git-secret/tokn",
            );
        },
        check: check_mounted_files,
        expect: "\"tokn\" is not a key of Secret site-git-credentials",
    },
    Breakage {
        what: "nginx open_file_cache on the synced tree",
        variant: "native-sidecar",
        edit: |v| {
            let conf = doc_mut(v, "nginx-config.yaml", 0);
            edit_str(
                conf,
                "data/default.conf",
                "server_name _;",
                "server_name _;\n    open_file_cache max=1000;",
            );
        },
        check: check_web_configs,
        expect: "open_file_cache keeps serving",
    },
    Breakage {
        what: "nginx disable_symlinks on (refuses the root link)",
        variant: "webhook",
        edit: |v| {
            let conf = doc_mut(v, "nginx-config.yaml", 0);
            edit_str(
                conf,
                "data/default.conf",
                "disable_symlinks on from=$document_root;",
                "disable_symlinks on;",
            );
        },
        check: check_web_configs,
        expect: "disable_symlinks on (without from=$document_root)",
    },
    Breakage {
        what: "nginx root not the published link",
        variant: "native-sidecar",
        edit: |v| {
            let conf = doc_mut(v, "nginx-config.yaml", 0);
            edit_str(conf, "data/default.conf", "root /git/site;", "root /git;");
        },
        check: check_web_configs,
        expect: "root /git is not the published link /git/site",
    },
    Breakage {
        what: "nginx root following another --link",
        variant: "native-sidecar",
        edit: |v| {
            replace_item(
                deployment(v),
                &format!("{SIDECAR}/args"),
                "--link=site",
                "--link=www",
            );
        },
        check: check_web_configs,
        expect: "root /git/site is not the published link /git/www",
    },
    Breakage {
        what: "nginx has no location for its probe path",
        variant: "native-sidecar",
        edit: |v| {
            let conf = doc_mut(v, "nginx-config.yaml", 0);
            edit_str(
                conf,
                "data/default.conf",
                "location = /healthz",
                "location = /health",
            );
        },
        check: check_web_configs,
        expect: "no `location = /healthz`",
    },
    Breakage {
        what: "nginx -c naming a file the repository example lacks",
        variant: "config-reload",
        edit: |v| {
            replace_item(
                deployment(v),
                &format!("{NGINX}/command"),
                "/git/site/nginx/nginx.conf",
                "/git/site/nginx/main.conf",
            );
        },
        check: check_web_configs,
        expect: "its example",
    },
    Breakage {
        what: "httpd -FollowSymLinks on the directory holding the link",
        variant: "httpd",
        edit: |v| {
            let conf = doc_mut(v, "httpd-config.yaml", 0);
            let allowed = "<Directory \"/git\">\n    Options FollowSymLinks";
            edit_str(
                conf,
                "data/httpd.conf",
                allowed,
                "<Directory \"/git\">\n    Options -FollowSymLinks",
            );
        },
        check: check_web_configs,
        expect: "the Options in effect for /git, which holds the link, refuse symlinks",
    },
    Breakage {
        what: "httpd Options None inherited by the directory holding the link",
        variant: "httpd",
        edit: |v| {
            let conf = doc_mut(v, "httpd-config.yaml", 0);
            edit_str(
                conf,
                "data/httpd.conf",
                "<Directory \"/git\">\n    Options FollowSymLinks\n</Directory>\n",
                "",
            );
        },
        check: check_web_configs,
        expect: "the Options in effect for /git, which holds the link, refuse symlinks",
    },
    Breakage {
        what: "httpd DocumentRoot not the published link",
        variant: "httpd",
        edit: |v| {
            let conf = doc_mut(v, "httpd-config.yaml", 0);
            edit_str(
                conf,
                "data/httpd.conf",
                "DocumentRoot \"/git/site\"",
                "DocumentRoot \"/usr/local/apache2/htdocs\"",
            );
        },
        check: check_web_configs,
        expect: "DocumentRoot /usr/local/apache2/htdocs is not the published link /git/site",
    },
    Breakage {
        what: "httpd caching the synced tree",
        variant: "httpd",
        edit: |v| {
            let conf = doc_mut(v, "httpd-config.yaml", 0);
            edit_str(
                conf,
                "data/httpd.conf",
                "DirectoryIndex index.html",
                "DirectoryIndex index.html\nCacheEnable disk /",
            );
        },
        check: check_web_configs,
        expect: "caches files of the previous commit",
    },
    Breakage {
        what: "kustomization.yaml missing a manifest",
        variant: "native-sidecar",
        edit: |v| {
            let k = v.kustomization.as_mut().expect("kustomization.yaml");
            let resources = node(k, "resources").as_sequence_mut().expect("resources");
            resources.retain(|r| r.as_str() != Some("nginx-config.yaml"));
        },
        check: check_kustomization,
        expect: "kustomization.yaml lists",
    },
];

#[test]
fn each_semantic_check_rejects_a_broken_copy() {
    let mut failures = Vec::new();
    for b in BREAKAGES {
        let mut v = variant(b.variant);
        let (intact, _) = model(&v);
        let before = (b.check)(&intact);
        (b.edit)(&mut v);
        let (broken, model_problems) = model(&v);
        let after = (b.check)(&broken);
        if !before.is_empty()
            || !model_problems.is_empty()
            || !after.iter().any(|p| p.contains(b.expect))
        {
            failures.push(format!(
                "{} ({}): expected a problem containing {:?}\n  intact: {before:?}\n  model: {model_problems:?}\n  broken: {after:?}",
                b.what, b.variant, b.expect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_unknown_kind_is_rejected() {
    let mut v = variant("native-sidecar");
    set(deployment(&mut v), "kind", yaml("Deploymnet"));
    let (_, problems) = model(&v);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unexpected kind \"Deploymnet\"")),
        "{problems:?}"
    );
}

#[test]
fn the_pod_monitor_check_rejects_broken_copies() {
    fn models(edit: impl FnOnce(&mut Vec<Variant>)) -> Vec<Model> {
        let mut variants = all_variants();
        edit(&mut variants);
        variants.iter().map(model_of).collect()
    }
    fn by_name(vs: &[Variant], name: &str) -> usize {
        vs.iter().position(|v| v.name == name).expect("variant")
    }
    assert_eq!(check_pod_monitors(&models(|_| {})), Vec::<String>::new());

    let renamed = check_pod_monitors(&models(|vs| {
        let i = by_name(vs, "podmonitor");
        set(
            doc_mut(&mut vs[i], "podmonitor.yaml", 0),
            "spec/podMetricsEndpoints/0/port",
            yaml("metrics"),
        );
    }));
    assert!(
        renamed
            .iter()
            .any(|p| p.contains("has no container port named \"metrics\"")),
        "{renamed:?}"
    );

    let no_metrics = check_pod_monitors(&models(|vs| {
        let i = by_name(vs, "httpd");
        let args = node(deployment(&mut vs[i]), &format!("{SIDECAR}/args"));
        args.as_sequence_mut()
            .expect("args")
            .retain(|a| a.as_str() != Some("--http-metrics"));
    }));
    assert!(
        no_metrics
            .iter()
            .any(|p| p.contains("httpd/") && p.contains("without --http-metrics")),
        "{no_metrics:?}"
    );

    let unselected = check_pod_monitors(&models(|vs| {
        let i = by_name(vs, "podmonitor");
        set(
            doc_mut(&mut vs[i], "podmonitor.yaml", 0),
            "spec/selector/matchLabels",
            yaml("{app: other}"),
        );
    }));
    assert!(
        unselected
            .iter()
            .any(|p| p.contains("selects no pod template")),
        "{unselected:?}"
    );
}
