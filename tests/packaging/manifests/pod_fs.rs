//! A pod's volumes on this machine: emptyDirs as directories writable by
//! the server user, Secrets and ConfigMaps as their files, and the
//! container paths of the manifests mapped onto them.

use super::*;

/// The user the web servers run as when the tests run as root, as in the
/// pods (where nothing runs as root).
pub(super) const SERVER_UID: u32 = 65534;

pub(super) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Hands `path` to [`SERVER_UID`] when running as root (an emptyDir is
/// writable by the pod's users).
pub(super) fn give_to_server_user(path: &Path) {
    if running_as_root() {
        let id = Some(SERVER_UID);
        nix::unistd::chown(
            path,
            id.map(nix::unistd::Uid::from_raw),
            id.map(nix::unistd::Gid::from_raw),
        )
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// A pod's volumes as directories of one temporary directory: emptyDirs
/// empty (and writable by the server user), Secrets and ConfigMaps with
/// their keys as files. Container paths are mapped onto them textually.
pub(super) struct PodFs {
    pub(super) dir: tempfile::TempDir,
}

impl PodFs {
    pub(super) fn new(objects: &Objects, pod: &PodSpec) -> PodFs {
        let dir = crate::support::tempdir("manifests-pod");
        // Readable by the server user, like a pod's volumes.
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the pod directory");
        let pod_fs = PodFs { dir };
        for volume in &pod.volumes {
            pod_fs.materialize(objects, volume);
        }
        pod_fs
    }

    fn materialize(&self, objects: &Objects, volume: &Volume) {
        let dir = self.volume_dir(&volume.name);
        fs::create_dir_all(&dir).expect("creating a volume directory");
        if volume.empty_dir.is_some() {
            give_to_server_user(&dir);
            return;
        }
        let (data, items) = match (&volume.secret, &volume.config_map) {
            (Some(s), _) => (objects.secrets.get(&s.secret_name), &s.items),
            (_, Some(c)) => (objects.config_maps.get(&c.name), &c.items),
            _ => panic!(
                "volume {:?}: only emptyDir, secret and configMap here",
                volume.name
            ),
        };
        for (key, content) in data.into_iter().flatten() {
            let file = match items.iter().find(|i| i.key == *key) {
                Some(item) => item.path.clone(),
                None if items.is_empty() => key.clone(),
                None => continue,
            };
            fs::write(dir.join(file), content).expect("writing a projected file");
        }
    }

    pub(super) fn volume_dir(&self, volume: &str) -> PathBuf {
        self.dir.path().join(format!("vol-{volume}"))
    }

    /// `c`'s mount paths and where they are here, deepest first.
    fn mounts(&self, c: &Container) -> Vec<(String, String)> {
        let mut mounts: Vec<(String, String)> = c
            .volume_mounts
            .iter()
            .map(|m| {
                let mut here = self.volume_dir(&m.name);
                if let Some(sub) = &m.sub_path {
                    here.push(sub);
                }
                let path = m.mount_path.trim_end_matches('/').to_string();
                (path, here.display().to_string())
            })
            .collect();
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        mounts
    }

    /// `text` with `c`'s mount paths (and `extra` prefixes) replaced by their
    /// directories here.
    pub(super) fn map(&self, c: &Container, text: &str, extra: &[(String, String)]) -> String {
        let mut prefixes = self.mounts(c);
        prefixes.extend(extra.iter().cloned());
        prefixes.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        replace_paths(text, &prefixes)
    }
}

/// Replaces each path prefix in one pass (a replacement is never replaced
/// again: the temporary directories live under /tmp, itself a mount path),
/// only where the prefix is a whole path: at the start, after a space, a
/// quote or `=`, and followed by the end, `/`, a space, a quote, `;` or `>`.
fn replace_paths(text: &str, prefixes: &[(String, String)]) -> String {
    let starts = |prev: Option<char>| prev.is_none_or(|c| c.is_whitespace() || "\"'=".contains(c));
    let ends = |next: Option<char>| next.is_none_or(|c| c.is_whitespace() || "/\"';>".contains(c));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let prev = text[..i].chars().next_back();
        let hit = prefixes.iter().find(|(from, _)| {
            rest.starts_with(from.as_str())
                && starts(prev)
                && ends(rest[from.len()..].chars().next())
        });
        if let Some((from, to)) = hit {
            out.push_str(to);
            i += from.len();
        } else {
            let ch = rest.chars().next().expect("not at the end");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// A value for an env var taken from a Secret or ConfigMap (`valueFrom`).
const PLACEHOLDER: &str = "placeholder-from-manifest";

/// `c`'s args and env with container paths mapped onto `pod_fs`.
pub(super) fn mapped_invocation(
    c: &Container,
    pod_fs: &PodFs,
) -> (Vec<String>, BTreeMap<String, String>) {
    let args = c.args.iter().map(|a| pod_fs.map(c, a, &[])).collect();
    let env = c
        .env
        .iter()
        .map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => pod_fs.map(c, v, &[]),
                (None, Some(_)) => PLACEHOLDER.to_string(),
                (None, None) => String::new(),
            };
            (e.name.clone(), value)
        })
        .collect();
    (args, env)
}
