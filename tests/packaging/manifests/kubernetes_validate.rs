//! `kubernetes-validate --strict` (PyPI) on every manifest for the
//! Kubernetes versions the variants target, and proof that it fails on
//! what it should (a misspelled field, an unknown kind, a native sidecar on
//! a version without them).

use super::*;

/// Kubernetes versions every manifest is validated against.
const K8S_VERSIONS: &[&str] = &["1.29.0", "1.33.0"];
/// The classic sidecar exists for clusters older than 1.29.
const CLASSIC_K8S_VERSIONS: &[&str] = &["1.25.0", "1.28.0"];
/// Custom resources kubernetes-validate has no schema for (it warns and
/// skips them); the PodMonitor check above covers what matters in them.
const SCHEMALESS: &[(&str, &str)] = &[("PodMonitor", "monitoring.coreos.com/v1")];

/// kubernetes-validate from $KUBERNETES_VALIDATE or PATH.
fn kubernetes_validate_program() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBERNETES_VALIDATE") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubernetes-validate"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubernetes-validate not found (PATH or $KUBERNETES_VALIDATE): \
                 pip install kubernetes-validate (in a venv; .ci/run does this)"
            )
        })
}

/// Runs `kubernetes-validate --strict` for `version` on `files`, expecting
/// `resources` "passed" lines; any error, any warning but a known schemaless
/// kind's, or a missing "passed" line is a failure.
fn kubernetes_validate(version: &str, files: &[PathBuf], resources: usize) -> Result<(), String> {
    let program = kubernetes_validate_program();
    let out = std::process::Command::new(&program)
        .args(["--strict", "-k", version])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let schemaless = |line: &str| {
        SCHEMALESS.iter().any(|(kind, api)| {
            line.contains(&format!(
                "Couldn't find schema for kind {kind} with api version {api}"
            ))
        })
    };
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ERROR") || (l.starts_with("WARN") && !schemaless(l)))
        .collect();
    let passed = text
        .lines()
        .filter(|l| l.starts_with("INFO") && l.contains(" passed "))
        .count();
    if out.status.success() && bad.is_empty() && passed == resources {
        Ok(())
    } else {
        Err(format!(
            "kubernetes-validate --strict -k {version}: {}, {passed} of {resources} resources passed\n{text}",
            out.status
        ))
    }
}

/// Every manifest file of `variants` and how many resources have a schema.
fn manifest_files(variants: &[Variant]) -> (Vec<PathBuf>, usize) {
    let files = variants
        .iter()
        .flat_map(|v| v.files.iter().map(|f| v.dir.join(f)))
        .collect();
    let resources = variants
        .iter()
        .flat_map(|v| &v.docs)
        .filter(|d| {
            let kind = d.value["kind"].as_str().unwrap_or_default();
            !SCHEMALESS.iter().any(|(k, _)| *k == kind)
        })
        .count();
    (files, resources)
}

#[test]
fn every_manifest_passes_kubernetes_validate_strict() {
    let variants = all_variants();
    let (files, resources) = manifest_files(&variants);
    for version in K8S_VERSIONS {
        kubernetes_validate(version, &files, resources).unwrap_or_else(|e| panic!("{e}"));
    }
    let classic: Vec<Variant> = variants
        .into_iter()
        .filter(|v| v.name == "classic-sidecar")
        .collect();
    let (files, resources) = manifest_files(&classic);
    for version in CLASSIC_K8S_VERSIONS {
        kubernetes_validate(version, &files, resources).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The validation above fails on what it should: a misspelled field, a
/// misspelled kind (only a warning from the tool), and a native sidecar on a
/// Kubernetes version without them.
#[test]
fn kubernetes_validate_rejects_broken_copies() {
    let original = manifests_dir().join("native-sidecar/deployment.yaml");
    let text = fs::read_to_string(&original).expect("reading the native sidecar deployment");
    let dir = crate::support::tempdir("manifests-validate");
    let write = |name: &str, from: &str, to: &str| {
        assert!(
            text.contains(from),
            "{from:?} not in {}",
            original.display()
        );
        let path = dir.path().join(name);
        fs::write(&path, text.replacen(from, to, 1)).expect("writing a broken copy");
        path
    };
    let typo = write(
        "typo.yaml",
        " restartPolicy: Always\n",
        " restartpolicy: Always\n",
    );
    let kind = write("kind.yaml", "\nkind: Deployment\n", "\nkind: Deploymnet\n");
    for (file, version, expect) in [
        (&typo, "1.33.0", "'restartpolicy' was unexpected"),
        (&kind, "1.33.0", "Couldn't find schema for kind Deploymnet"),
        (&original, "1.27.0", "'restartPolicy' was unexpected"),
    ] {
        match kubernetes_validate(version, std::slice::from_ref(file), 1) {
            Ok(()) => panic!("{} passed kubernetes-validate {version}", file.display()),
            Err(e) => assert!(e.contains(expect), "expected {expect:?} in:\n{e}"),
        }
    }
}
