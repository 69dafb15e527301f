//! git-sidecar's own flag parser and configuration checks on every
//! git-sidecar container of the manifests (args and env as written, files
//! from the manifests' Secrets): accepted, or, for the variants in
//! [`PENDING`](super::PENDING), refused naming exactly the pending flags.
//! The HTTPS and SSH variants' credentials are followed to the Secret's files.

use super::breakages::{deployment, node, yaml, SIDECAR};
use super::*;

/// The flags named by refusals, e.g. `--username (GITSYNC_USERNAME) is not supported yet`.
fn refused_flags(problems: &[String]) -> BTreeSet<String> {
    problems
        .iter()
        .filter(|p| p.contains("not supported yet"))
        .filter_map(|p| p.split_whitespace().next())
        .map(|flag| flag.trim_end_matches(':').to_string())
        .collect()
}

/// What git-sidecar says about `c`'s configuration: `Ok` when accepted,
/// else every problem (clap's usage errors included).
fn validate_sidecar(c: &Container, pod_fs: &PodFs) -> Result<(), Vec<String>> {
    sidecar_config(c, pod_fs).map(|_| ())
}

/// `c`'s configuration as git-sidecar builds it, or every problem.
fn sidecar_config(
    c: &Container,
    pod_fs: &PodFs,
) -> Result<git_sidecar::config::Config, Vec<String>> {
    use git_sidecar::cli::Cli;
    use git_sidecar::config::{Config, ConfigError};
    let (args, env) = mapped_invocation(c, pod_fs);
    let argv: Vec<String> = std::iter::once("git-sidecar".to_string())
        .chain(args)
        .collect();
    let lookup = |name: &str| env.get(name).cloned();
    if let Err(e) = Cli::try_parse_with_env(argv.clone(), &lookup) {
        return Err(vec![format!("clap: {e}")]);
    }
    match Config::from_args_and_env(argv, &lookup) {
        Ok(config) => Ok(config),
        Err(ConfigError::Invalid(problems, _)) => Err(problems.0),
        Err(e) => Err(vec![e.to_string()]),
    }
}

fn sidecar_config_problems(
    v: &Variant,
    w: &Workload,
    c: &Container,
    pod_fs: &PodFs,
) -> Option<String> {
    let at = format!("{}/{} container {}", v.name, w.what, c.name);
    match (validate_sidecar(c, pod_fs), pending_flags(&v.name)) {
        (Ok(()), None) => None,
        (Err(problems), None) => Some(format!("{at}: refused: {problems:#?}")),
        (Ok(()), Some(flags)) => Some(format!(
            "{at}: now accepted, though it uses {flags:?}: take it out of PENDING and update manifests/README.md"
        )),
        (Err(problems), Some(flags)) => {
            let expected: BTreeSet<String> = flags.iter().map(|f| f.to_string()).collect();
            let all_refusals = problems.iter().all(|p| p.contains("not supported yet"));
            (!all_refusals || refused_flags(&problems) != expected).then(|| {
                format!("{at}: expected refusals of exactly {flags:?}, got {problems:#?}")
            })
        }
    }
}

#[test]
fn git_sidecar_accepts_every_manifests_configuration() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for v in all_variants() {
        let m = model_of(&v);
        for w in &m.objects.workloads {
            let pod_fs = PodFs::new(&m.objects, &w.pod);
            for (c, _) in w.pod.all_containers().filter(|(c, _)| c.is_git_sidecar()) {
                checked += 1;
                problems.extend(sidecar_config_problems(&v, w, c, &pod_fs));
            }
        }
    }
    assert!(checked >= 8, "only {checked} git-sidecar containers found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn git_sidecar_configuration_check_rejects_broken_args() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "--period=30s",
            "--perod=30s",
            "clap: error: unexpected argument '--perod",
        ),
        (
            "--period=30s",
            "--period=soon",
            "--period (GITSYNC_PERIOD): invalid duration",
        ),
        (
            "--http-bind=:8081",
            "--http-bind=example.com:8081",
            "--http-bind (GITSYNC_HTTP_BIND)",
        ),
    ];
    for (from, to, expect) in cases {
        let mut v = variant("native-sidecar");
        let args = node(deployment(&mut v), &format!("{SIDECAR}/args"));
        let arg = args
            .as_sequence_mut()
            .expect("args")
            .iter_mut()
            .find(|a| a.as_str() == Some(*from))
            .unwrap_or_else(|| panic!("{from} not in the args"));
        *arg = yaml(to);
        let m = model_of(&v);
        let w = &m.objects.workloads[0];
        let pod_fs = PodFs::new(&m.objects, &w.pod);
        let problem = sidecar_config_problems(&v, w, &w.pod.init_containers[0], &pod_fs);
        assert!(
            problem.as_deref().is_some_and(|p| p.contains(expect)),
            "{to}: expected {expect:?}, got {problem:?}"
        );
    }
    // The SSH variant with a host-key setting that is no boolean.
    let mut v = variant("private-ssh");
    let args = node(deployment(&mut v), &format!("{SIDECAR}/args"));
    args.as_sequence_mut()
        .expect("args")
        .push(yaml("--ssh-known-hosts=maybe"));
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let problem = sidecar_config_problems(&v, w, &w.pod.init_containers[0], &pod_fs);
    assert!(
        problem
            .as_deref()
            .is_some_and(|p| p.contains("--ssh-known-hosts (GITSYNC_SSH_KNOWN_HOSTS)")),
        "{problem:?}"
    );
}

#[test]
fn private_ssh_takes_its_key_and_known_hosts_from_the_secret() {
    let v = variant("private-ssh");
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let config = sidecar_config(&w.pod.init_containers[0], &pod_fs)
        .unwrap_or_else(|p| panic!("private-ssh refused: {p:#?}"));
    let secret = pod_fs.volume_dir("git-secret");
    assert_eq!(config.ssh.key_files, [secret.join("ssh")]);
    assert_eq!(config.ssh.known_hosts, Some(secret.join("known_hosts")));
    assert_eq!(config.ssh.command, None);
    // The Secret's placeholders are no key and no host entry: named at start-up.
    let warnings = config.warnings.join("\n");
    for flag in ["--ssh-key-file", "--ssh-known-hosts-file"] {
        assert!(warnings.contains(flag), "{warnings}");
    }
}

#[test]
fn private_https_takes_its_password_from_the_secret_file() {
    use git_sidecar::config::PasswordSource;
    let v = variant("private-https");
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let config = sidecar_config(&w.pod.init_containers[0], &pod_fs)
        .unwrap_or_else(|p| panic!("private-https refused: {p:#?}"));
    let auth = config
        .auth
        .expect("--username and --password-file configure credentials");
    assert_eq!(auth.username, "git");
    let PasswordSource::File { path, .. } = &auth.password else {
        panic!("the password must come from the mounted file, got {auth:?}");
    };
    assert!(
        path.starts_with(pod_fs.volume_dir("git-secret")),
        "{} is not in the git-secret volume",
        path.display()
    );
    // The Secret's placeholder token, as a sync would read it.
    assert_eq!(auth.password().as_deref(), Ok("CHANGE-ME"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

/// The webhook variant's Secret ships `CHANGE-ME`: git-sidecar accepts it but
/// warns at start-up, naming the flag and the mounted file, never the value.
#[test]
fn the_webhook_secrets_placeholder_is_warned_about() {
    let v = variant("webhook");
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let (c, _) = w
        .pod
        .all_containers()
        .find(|(c, _)| c.is_git_sidecar())
        .expect("a git-sidecar container");
    let file = c
        .setting("incoming-webhook-secret-file")
        .expect("--incoming-webhook-secret-file");
    let mounted = fs::read(pod_fs.map(c, &file, &[])).expect("the mounted webhook secret");
    assert_eq!(mounted.trim_ascii_end(), b"CHANGE-ME", "the shipped value");
    let config = sidecar_config(c, &pod_fs).unwrap_or_else(|p| panic!("webhook refused: {p:#?}"));
    let warnings = config.warnings.join("\n");
    let warning = config
        .warnings
        .iter()
        .find(|w| w.contains("looks like a placeholder"))
        .unwrap_or_else(|| panic!("no placeholder warning in {warnings:?}"));
    assert!(
        warning.contains("--incoming-webhook-secret-file") && warning.contains("openssl rand"),
        "{warning}"
    );
    assert!(
        !warnings.contains("CHANGE-ME"),
        "the value is quoted: {warnings}"
    );
}

/// The verified variant verifies commits against the key files of its
/// Secret (mounted, readable at start-up); the Secret's placeholders do not
/// parse as keys, which start-up warns about, naming the flags.
#[test]
fn verified_takes_its_key_files_from_the_secret() {
    let v = variant("verified");
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let config = sidecar_config(&w.pod.init_containers[0], &pod_fs)
        .unwrap_or_else(|p| panic!("verified refused: {p:#?}"));
    let keys = pod_fs.volume_dir("verify-keys");
    assert_eq!(config.verify.mode, git_sidecar::verify::Mode::Head);
    assert_eq!(
        config.verify.allowed_signers,
        [keys.join("allowed_signers")]
    );
    assert_eq!(config.verify.pgp_keyrings, [keys.join("keyring.asc")]);
    let warnings = config.warnings.join("\n");
    for flag in ["--verify-allowed-signers", "--verify-pgp-keyring"] {
        assert!(warnings.contains(flag), "{warnings}");
    }
    // Without the Secret's volume the key files are missing: refused at start-up.
    let mut v = variant("verified");
    let mounts = node(deployment(&mut v), &format!("{SIDECAR}/volumeMounts"));
    mounts
        .as_sequence_mut()
        .expect("volumeMounts")
        .retain(|m| m["name"].as_str() != Some("verify-keys"));
    let m = model_of(&v);
    let w = &m.objects.workloads[0];
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let problems = sidecar_config(&w.pod.init_containers[0], &pod_fs)
        .err()
        .unwrap_or_default()
        .join("\n");
    assert!(
        problems.contains("/etc/git-verify/allowed_signers: cannot read it")
            && problems.contains("/etc/git-verify/keyring.asc: cannot read it"),
        "{problems}"
    );
}
