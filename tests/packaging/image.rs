//! The container image (`Dockerfile`), built and run for real with rootful
//! podman + runc, offline: `scripts/build-static` makes the static binary,
//! the Dockerfile's runtime stage is built from it (`--build-context dist=`),
//! and the image is inspected (only the binary and the CA bundle, its size,
//! user 65533, no shell) and run hardened (`--network none --read-only
//! --cap-drop ALL`, no writable tmpfs, no passwd entry) against a `git
//! daemon` that the test starts inside the container's own network namespace,
//! reached by host name: through the runtime's /etc/hosts as the default
//! user, and through DNS as an arbitrary UID (OpenShift-style `UID:0`).
//!
//! Needs root, podman and runc (Debian: `apt-get install podman runc`); podman
//! reads `.ci/containers.conf`. The static release build takes minutes the
//! first time; set `STATIC_TARGET_DIR` to reuse another target directory.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sched::CloneFlags;

use crate::support::client;
use crate::support::git::{isolate, require_git_program};
use crate::support::{
    assert_published_layout, assert_tree_matches_commit, link_target_hash, poll_until, tempdir,
    Upstream, DEADLINE,
};

/// Where the image's CA bundle comes from (the `compile` stage uses the same path).
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The sidecar's HTTP address inside the container's network namespace.
const HTTP_ADDR: &str = "127.0.0.1:8080";
/// The git daemon's address inside the container's network namespace (git://'s
/// default port: the repo URLs carry no port).
const GIT_PORT: u16 = 9418;
/// The UID:GID the image runs as by default (git-sync's).
const IMAGE_USER: &str = "65533:65533";
/// An arbitrary UID as OpenShift assigns them, with GID 0.
const ARBITRARY_UID: u32 = 1_000_650_000;
/// What the image may weigh beyond its two files (tar headers, directories).
const IMAGE_OVERHEAD_BYTES: u64 = 64 * 1024;
/// Hard upper bound on the image size, whatever the binary weighs.
const IMAGE_MAX_BYTES: u64 = 40 * 1024 * 1024;

#[test]
fn image_is_minimal_and_syncs_hardened_as_nonroot_and_as_any_uid() {
    require_tools();
    let dist = dist_dir();
    let image = Image::build(dist.path());
    inspect_image(&image, dist.path());
    assert_no_shell(&image);
    sync_in_container(&image, &DEFAULT_USER_RUN);
    sync_in_container(&image, &ARBITRARY_UID_RUN);
}

// ---------------------------------------------------------------------------
// Tools, the static binary and the image

/// Panics with what to install unless we are root with podman and runc.
fn require_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image test needs root (rootful podman, and setns into the container's network)"
    );
    for tool in ["podman", "runc"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "`{tool} --version` failed: install podman and runc (Debian: apt-get install podman runc)"
        );
    }
    assert!(
        Path::new(HOST_CA_BUNDLE).is_file(),
        "{HOST_CA_BUNDLE} is missing: install ca-certificates (Debian: apt-get install ca-certificates)"
    );
}

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/build-static` (cargo is fresh when nothing changed) and
/// returns the static binary's path.
pub(crate) fn build_static_binary() -> PathBuf {
    let out = Command::new(repo_dir().join("scripts/build-static"))
        .env("CARGO", env!("CARGO"))
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/build-static");
    assert!(
        out.status.success(),
        "scripts/build-static failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "build-static printed {path:?}, not a file");
    path
}

/// A directory holding what the Dockerfile's `dist` stage would: the static
/// binary and the CA bundle, at its top level.
fn dist_dir() -> tempfile::TempDir {
    let bin = build_static_binary();
    let dist = tempdir("image-dist");
    fs::copy(&bin, dist.path().join("git-sidecar")).expect("copying the binary");
    fs::copy(HOST_CA_BUNDLE, dist.path().join("ca-certificates.crt")).expect("copying CA bundle");
    dist
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Runs podman with the project's containers.conf.
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .env("CONTAINERS_CONF", repo_dir().join(".ci/containers.conf"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman {args:?}: {e}"))
}

/// Runs podman and returns its trimmed stdout; panics with stderr on failure.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A locally built image, removed when dropped.
struct Image {
    tag: String,
}

impl Image {
    /// The Dockerfile's runtime stage from `dist`, offline (the documented command).
    fn build(dist: &Path) -> Self {
        let image = Image {
            tag: format!("localhost/{}:test", unique("git-sidecar-it")),
        };
        let context = format!("dist={}", dist.display());
        let dockerfile = repo_dir().join("Dockerfile");
        podman_ok(&[
            "build",
            "--pull=never",
            "--network=none",
            "--layers=false",
            "--build-context",
            &context,
            "--target",
            "runtime",
            "--tag",
            &image.tag,
            "--file",
            path_str(&dockerfile),
            path_str(repo_dir()),
        ]);
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "--force", &self.tag]);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

// ---------------------------------------------------------------------------
// What the image is

/// Config (user, entrypoint, port), size, and exactly which files it holds.
fn inspect_image(image: &Image, dist: &Path) {
    let json = podman_ok(&["image", "inspect", &image.tag]);
    let all: serde_json::Value = serde_json::from_str(&json).expect("image inspect JSON");
    let info = &all[0];
    let config = &info["Config"];
    assert_eq!(config["User"], IMAGE_USER, "the image's default user");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/git-sidecar"]));
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "EXPOSE 8080 missing: {config}"
    );
    // What git-sync's image sets and its manifests rely on.
    let env: Vec<&str> = config["Env"]
        .as_array()
        .map(|vars| vars.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for var in ["GITSYNC_ROOT=/git", "HOME=/tmp"] {
        assert!(env.contains(&var), "the image must set {var}: {env:?}");
    }
    assert_eq!(
        config["WorkingDir"], "/tmp",
        "the image's working directory"
    );
    let files = image_files(image);
    let expected = ["etc/ssl/certs/ca-certificates.crt", "git-sidecar"];
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        expected,
        "the image must hold only the binary and the CA bundle"
    );
    for (in_image, in_dist) in [
        (expected[0], "ca-certificates.crt"),
        (expected[1], "git-sidecar"),
    ] {
        let want = fs::read(dist.join(in_dist)).expect("reading the dist directory");
        assert!(files[in_image] == want, "{in_image} differs from {in_dist}");
    }
    assert_size(info["Size"].as_u64().expect("image Size"), &files);
}

/// Every non-directory entry of the image, relative path → content.
fn image_files(image: &Image) -> BTreeMap<String, Vec<u8>> {
    let mount = PathBuf::from(podman_ok(&["image", "mount", &image.tag]));
    let mut files = BTreeMap::new();
    let mut stack = vec![mount.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)
            .expect("reading the mounted image")
            .flatten()
        {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("stat in the mounted image");
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if path.ends_with("git-sidecar") {
                assert!(
                    meta.permissions().mode() & 0o111 != 0,
                    "binary not executable"
                );
            }
            let rel = path.strip_prefix(&mount).expect("under the mount");
            let content = fs::read(&path).unwrap_or_default();
            files.insert(rel.to_string_lossy().into_owned(), content);
        }
    }
    podman_ok(&["image", "unmount", &image.tag]);
    files
}

/// Printed for docs/container-image.md; bounded by its two files plus a little overhead.
fn assert_size(size: u64, files: &BTreeMap<String, Vec<u8>>) {
    let content: u64 = files.values().map(|c| c.len() as u64).sum();
    eprintln!(
        "image size: {size} bytes ({:.1} MB); its files: {content} bytes",
        size as f64 / 1e6
    );
    assert!(
        size <= content + IMAGE_OVERHEAD_BYTES && size <= IMAGE_MAX_BYTES,
        "image is {size} bytes; its files are {content} bytes (allowed: +{IMAGE_OVERHEAD_BYTES}, at most {IMAGE_MAX_BYTES})"
    );
}

/// No shell to exec into: `/bin/sh` cannot be started.
fn assert_no_shell(image: &Image) {
    let out = podman(&[
        "run",
        "--rm",
        "--network=none",
        "--entrypoint",
        "/bin/sh",
        &image.tag,
        "-c",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/bin/sh"),
        "/bin/sh must not exist in the image ({}):\n{stderr}",
        out.status
    );
}

// ---------------------------------------------------------------------------
// Running it

/// One hardened run of the image: who it runs as and how it finds the git server.
struct Run {
    what: &'static str,
    /// `--user`; `None` runs as the image's default user.
    user: Option<&'static str>,
    /// Owner expected of the process and of every file it writes.
    uid: u32,
    gid: u32,
    /// Mode of the volume's root directory, owned by `uid`:`gid` unless the
    /// run is by group (GID 0, the volume owned by root).
    volume_mode: u32,
    volume_owned_by_uid: bool,
    /// The repo's host name; resolved through DNS (a responder in the
    /// container's network namespace) or through the runtime's /etc/hosts.
    host: &'static str,
    dns: bool,
    /// HOME given with `--env`; `None` keeps the image's (`/tmp`).
    home: Option<&'static str>,
    /// Where the volume is mounted; at `/git` no `--root` is passed (the
    /// image's GITSYNC_ROOT, as git-sync's manifests do).
    mount: &'static str,
}

const DEFAULT_USER_RUN: Run = Run {
    what: "default user 65533, image default root /git, host name from /etc/hosts",
    user: None,
    uid: 65533,
    gid: 65533,
    volume_mode: 0o755,
    volume_owned_by_uid: true,
    host: "gitserver",
    dns: false,
    home: None,
    mount: "/git",
};

const ARBITRARY_UID_RUN: Run = Run {
    what: "arbitrary UID 1000650000:0, no HOME, host name from DNS",
    user: Some("1000650000:0"),
    uid: ARBITRARY_UID,
    gid: 0,
    volume_mode: 0o775,
    volume_owned_by_uid: false,
    host: "gitserver.test",
    dns: true,
    home: Some("/nonexistent"),
    mount: "/data",
};

/// Publishes a commit, then a second one, from a git daemon reached by host
/// name; checks readiness, ownership, a graceful stop and the published tree.
fn sync_in_container(image: &Image, run: &Run) {
    let upstream = Upstream::named("site");
    let first = upstream.commit_rich_tree("v1");
    let scratch = tempdir("image-run");
    let volume = prepare_volume(scratch.path(), run);
    let container = Container::run(image, run, &volume, scratch.path());
    let pid = container.pid();
    let base = upstream.base();
    let daemon = in_netns(pid, || NetnsGitDaemon::start(base));
    let dns = run
        .dns
        .then(|| in_netns(pid, || DnsResponder::start(run.host)));
    let link = volume.join("site");
    let context = || format!("{}\n{}\n{}", run.what, container.logs(), daemon.log());
    wait_for_link(&link, &first, &context);
    wait_ready(pid, &context);
    let second = upstream.commit_file("index.html", "<h1>v2</h1>\n", "v2");
    wait_for_link(&link, &second, &context);
    assert_process_identity(pid, run);
    assert_only_volume_writable(pid, run.mount);
    // Stopped first: the sidecar deletes the old worktree meanwhile.
    assert_eq!(
        container.stop(),
        0,
        "graceful stop exit code\n{}",
        context()
    );
    assert_owned_by(&volume, run.uid, run.what);
    assert_eq!(assert_published_layout(&volume, &link), second);
    assert_tree_matches_commit(&link, &upstream, &second);
    if let Some(dns) = dns {
        assert!(dns.answered() > 0, "no DNS answer was used\n{}", context());
    }
}

/// The host directory mounted at `run.mount` (the sidecar's root).
fn prepare_volume(scratch: &Path, run: &Run) -> PathBuf {
    let volume = scratch.join("data");
    fs::create_dir(&volume).expect("creating the volume");
    if run.volume_owned_by_uid {
        std::os::unix::fs::chown(&volume, Some(run.uid), Some(run.gid)).expect("chown volume");
    }
    fs::set_permissions(&volume, fs::Permissions::from_mode(run.volume_mode))
        .expect("chmod volume");
    volume
}

/// A container started with `podman run -d`, force-removed when dropped.
struct Container {
    name: String,
}

impl Container {
    /// Runs the image hardened, as `run` says, with `volume` at `run.mount`
    /// (passed as --root unless it is the image's default, /git).
    fn run(image: &Image, run: &Run, volume: &Path, scratch: &Path) -> Self {
        let container = Container {
            name: unique("git-sidecar-it"),
        };
        let mut args = vec!["run", "--detach", "--pull=never", "--name", &container.name];
        args.extend(HARDENING);
        let mount = format!("{}:{}", volume.display(), run.mount);
        args.extend(["--volume", &mount]);
        let user_args = identity_args(run);
        args.extend(user_args.iter().map(String::as_str));
        let resolution = resolution_args(run, scratch);
        args.extend(resolution.iter().map(String::as_str));
        let repo = format!("git://{}/site", run.host);
        args.push(&image.tag);
        args.extend(["--repo", &repo, "--link", "site"]);
        if run.mount != "/git" {
            args.extend(["--root", run.mount]);
        }
        args.extend(["--period", "1s", "--max-failures", "-1"]);
        args.extend(["--http-bind", HTTP_ADDR]);
        podman_ok(&args);
        container
    }

    /// The container's PID 1 as seen from the host.
    fn pid(&self) -> u32 {
        let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &self.name]);
        pid.parse()
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("container has no pid ({pid:?})\n{}", self.logs()))
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "--- container {} logs ---\n{}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// SIGTERM (then SIGKILL after 20 s); returns the exit code.
    fn stop(&self) -> i64 {
        podman_ok(&["stop", "--time", "20", &self.name]);
        let code = podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name]);
        code.parse().expect("exit code")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// No network but loopback, nothing writable but the volume (not even a
/// tmpfs), no capabilities, no privilege gain, no passwd entry added.
const HARDENING: [&str; 6] = [
    "--network=none",
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--passwd=false",
];

fn identity_args(run: &Run) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(user) = run.user {
        args.push(format!("--user={user}"));
    }
    if let Some(home) = run.home {
        args.push(format!("--env=HOME={home}"));
    }
    args
}

/// /etc/hosts from the runtime (`--add-host`), or no /etc/hosts and a
/// resolv.conf naming the test's DNS responder on the container's loopback.
fn resolution_args(run: &Run, scratch: &Path) -> Vec<String> {
    if !run.dns {
        return vec![format!("--add-host={}:127.0.0.1", run.host)];
    }
    let resolv = scratch.join("resolv.conf");
    fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:3\n",
    )
    .expect("writing resolv.conf");
    vec![
        "--no-hosts".to_string(),
        format!("--volume={}:/etc/resolv.conf:ro", resolv.display()),
    ]
}

fn wait_for_link(link: &Path, sha: &str, context: &dyn Fn() -> String) {
    let ok = poll_until(DEADLINE, || link_target_hash(link).as_deref() == Some(sha));
    assert!(
        ok,
        "{} never pointed at {sha}\n{}",
        link.display(),
        context()
    );
}

/// `/readyz` answers 200 on the container's loopback.
fn wait_ready(pid: u32, context: &dyn Fn() -> String) {
    let mut last = String::new();
    let ready = in_netns(pid, || {
        poll_until(DEADLINE, || {
            match client::get_from_this_netns(HTTP_ADDR, "/readyz") {
                Ok(r) if r.status == 200 => true,
                Ok(r) => {
                    last = r.to_string();
                    false
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        })
    });
    assert!(
        ready,
        "/readyz never answered 200 (last: {last})\n{}",
        context()
    );
}

/// The process runs as the run's UID and GID, with the HOME it was given,
/// and there is no /etc/passwd to look itself up in.
fn assert_process_identity(pid: u32, run: &Run) {
    let passwd = PathBuf::from(format!("/proc/{pid}/root/etc/passwd"));
    assert!(
        !passwd.exists(),
        "{}: the container has an /etc/passwd",
        run.what
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/pid/status");
    for (key, id) in [("Uid:", run.uid), ("Gid:", run.gid)] {
        let line = status.lines().find(|l| l.starts_with(key)).expect(key);
        let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert!(
            ids.iter().all(|v| *v == id.to_string()),
            "{}: {line}",
            run.what
        );
    }
    let environ = fs::read(format!("/proc/{pid}/environ")).expect("/proc/pid/environ");
    let home = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"HOME="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let want = run.home.unwrap_or("/tmp");
    assert_eq!(home.as_deref(), Some(want), "{}: HOME", run.what);
    // The working directory is the image's /tmp (compared by inode: the
    // path of another mount namespace's directory is not ours to read).
    let cwd = fs::metadata(format!("/proc/{pid}/cwd")).expect("/proc/pid/cwd");
    let tmp = fs::metadata(format!("/proc/{pid}/root/tmp")).expect("the container's /tmp");
    assert_eq!(
        (cwd.dev(), cwd.ino()),
        (tmp.dev(), tmp.ino()),
        "{}: the working directory must be /tmp",
        run.what
    );
}

/// Nothing is writable in the container but the volume (and the kernel's
/// /proc, /dev and /sys): a read-only root and no tmpfs.
fn assert_only_volume_writable(pid: u32, volume: &str) {
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let writable: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (point, options) = (*fields.get(4)?, *fields.get(5)?);
            options.split(',').any(|o| o == "rw").then_some(point)
        })
        .filter(|point| !["/proc", "/dev", "/sys"].iter().any(|k| in_tree(point, k)))
        .collect();
    assert_eq!(writable, [volume], "writable mounts in the container");
}

/// True when `path` is `top` or below it.
fn in_tree(path: &str, top: &str) -> bool {
    path.strip_prefix(top)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Every entry under `dir` (the volume itself excluded) belongs to `uid`.
fn assert_owned_by(dir: &Path, uid: u32, what: &str) {
    let mut wrong = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("reading the volume").flatten() {
            let meta = fs::symlink_metadata(entry.path()).expect("stat in the volume");
            if meta.uid() != uid {
                wrong.push(format!("{} (uid {})", entry.path().display(), meta.uid()));
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{what}: files not owned by {uid}:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Servers inside the container's network namespace

/// Runs `f` on a thread that has joined the network namespace of process
/// `pid`: sockets it creates, and processes it spawns, live there.
fn in_netns<T: Send>(pid: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let ns = File::open(format!("/proc/{pid}/ns/net")).expect("opening the netns");
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the container");
            f()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `git daemon` listening on 127.0.0.1:9418 of the namespace it was started
/// in (see [`in_netns`]), serving every repository under a base directory.
struct NetnsGitDaemon {
    child: Child,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl NetnsGitDaemon {
    fn start(base: &Path) -> Self {
        require_git_program("daemon", "install git (Debian: apt-get install git)");
        let log_dir = tempdir("netns-git-daemon");
        let log = log_dir.path().join("daemon.log");
        let mut cmd = Command::new("git");
        isolate(&mut cmd);
        cmd.arg("daemon")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={GIT_PORT}"))
            .args(["--reuseaddr", "--export-all", "--enable=upload-pack"])
            .args(["--informative-errors", "--verbose"])
            .arg(format!("--base-path={}", base.display()))
            .current_dir(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("daemon log"))
            // Its own group, killed as one on drop. (No PDEATHSIG: it would
            // fire as soon as the short-lived netns thread that spawns it ends.)
            .process_group(0);
        let child = cmd.spawn().expect("starting git daemon");
        let daemon = NetnsGitDaemon {
            child,
            log,
            _log_dir: log_dir,
        };
        let listening = poll_until(DEADLINE, || {
            TcpStream::connect(("127.0.0.1", GIT_PORT)).is_ok()
        });
        assert!(listening, "git daemon is not listening\n{}", daemon.log());
        daemon
    }

    fn log(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- git daemon log ---\n{log}")
    }
}

impl Drop for NetnsGitDaemon {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A DNS server on 127.0.0.1:53 of the namespace it was started in that
/// answers A queries for one name with 127.0.0.1, AAAA with no data and
/// everything else with NXDOMAIN; it counts the addresses it handed out.
struct DnsResponder {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    fn start(name: &str) -> Self {
        let socket = UdpSocket::bind(("127.0.0.1", 53)).expect("binding 127.0.0.1:53");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let (stop, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (stop2, answered2, name) = (stop.clone(), answered.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((reply, has_address)) = dns_reply(&buf[..n], &name) {
                    let _ = socket.send_to(&reply, peer);
                    answered2.fetch_add(usize::from(has_address), Ordering::SeqCst);
                }
            }
        });
        DnsResponder {
            stop,
            answered,
            thread: Some(thread),
        }
    }

    /// How many replies carried an address.
    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to a one-question DNS query, and whether it holds an address.
fn dns_reply(query: &[u8], name: &str) -> Option<(Vec<u8>, bool)> {
    const TYPE_A: u16 = 1;
    let (qname, question_end) = dns_question_name(query)?;
    let qtype = u16::from_be_bytes([*query.get(question_end)?, *query.get(question_end + 1)?]);
    let known = qname.eq_ignore_ascii_case(name);
    let has_address = known && qtype == TYPE_A;
    let rcode: u8 = if known { 0 } else { 3 };
    let mut reply = query[..2].to_vec(); // the query's ID
    reply.extend([0x80 | (query[2] & 0x01), 0x80 | rcode]); // QR, RD echoed; RA
    reply.extend([0, 1, 0, u8::from(has_address), 0, 0, 0, 0]);
    reply.extend(&query[12..question_end + 4]);
    if has_address {
        // Name by pointer to the question, A, IN, TTL 60, 4 bytes: 127.0.0.1.
        reply.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some((reply, has_address))
}

/// The dotted name of the first question and the offset just after it.
fn dns_question_name(query: &[u8]) -> Option<(String, usize)> {
    if query.len() < 12 || query[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    (query.len() >= at + 4).then(|| (labels.join("."), at))
}
