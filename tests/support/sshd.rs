//! A real OpenSSH server for the ssh tests: `/usr/sbin/sshd -D -e` on a
//! loopback address with throwaway host keys, public-key login for the
//! current user (the tests run as root, hence `PermitRootLogin
//! prohibit-password`), `AcceptEnv GIT_PROTOCOL` and `git-upload-pack` on
//! its PATH. [`Sshd::start_without_accept_env`] leaves `AcceptEnv` out, as
//! sshd's default configuration does: the client's `GIT_PROTOCOL=version=2`
//! never reaches upload-pack, which then answers with protocol v0 (a plain
//! sshd with git-shell, gitolite, many appliances). The `git-upload-pack` on
//! its PATH records the `GIT_PROTOCOL` it gets ([`Sshd::upload_pack_protocols`]).
//! Plus user keys made with `ssh-keygen` and known_hosts lines.
//! Missing tools fail the test with the Debian packages to install.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::servers::LOCALHOST;

const SSHD: &str = "/usr/sbin/sshd";
const INSTALL: &str = "apt-get install openssh-server openssh-client";

/// Panics unless sshd and ssh-keygen are installed.
pub fn require_ssh_tools() {
    assert!(
        Path::new(SSHD).is_file(),
        "{SSHD} not found: the ssh tests need a real sshd ({INSTALL})"
    );
    assert!(
        which("ssh-keygen").is_some(),
        "ssh-keygen not found: the ssh tests make keys with it ({INSTALL})"
    );
}

/// The absolute path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// A key pair made by `ssh-keygen` (no passphrase unless asked).
pub struct KeyPair {
    /// The private key file (what `--ssh-key-file` names).
    pub path: PathBuf,
    /// The `.pub` line: `<type> <base64> <comment>`.
    pub public: String,
}

/// The sidecar's flags for these keys (tried in order) and known_hosts.
pub fn ssh_args(keys: &[&KeyPair], known_hosts: &Path) -> Vec<String> {
    let mut args: Vec<String> = keys
        .iter()
        .map(|k| format!("--ssh-key-file={}", k.path.display()))
        .collect();
    args.push(format!("--ssh-known-hosts-file={}", known_hosts.display()));
    args
}

/// `ssh-keygen -t <kind>` into `dir/name`, with `passphrase` (empty: none).
pub fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> KeyPair {
    require_ssh_tools();
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path)
        .stdin(Stdio::null());
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let out = cmd.output().expect("running ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen -t {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = fs::read_to_string(path.with_extension("pub"))
        .expect("reading the .pub file")
        .trim()
        .to_string();
    KeyPair { path, public }
}

/// `ssh-keygen -s ca`: a user certificate for `key`, valid for `principal`,
/// written where OpenSSH looks for it beside the key (`<key>-cert.pub`).
pub fn certify(ca: &KeyPair, key: &KeyPair, principal: &str) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.path)
        .args(["-I", "test-user", "-n", principal])
        .arg(key.path.with_extension("pub"))
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen -s");
    assert!(
        out.status.success(),
        "ssh-keygen -s failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert_path_of(key)
}

/// `<key>-cert.pub`.
pub fn cert_path_of(key: &KeyPair) -> PathBuf {
    let mut cert = key.path.clone().into_os_string();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

/// `ssh-keygen -t ecdsa -b 256` until the private scalar of the key starts
/// with a zero byte (about 1 key in 256; OpenSSH then stores it as a 31-byte
/// `mpint`). Gives up after 5,000 keys (odds of that: below 1 in 10^8).
pub fn keygen_p256_with_leading_zero(dir: &Path, name: &str) -> KeyPair {
    for attempt in 0..5_000 {
        let path = dir.join(name);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(path.with_extension("pub"));
        let key = keygen(dir, name, "ecdsa", "");
        if p256_scalar_len(&key.path) < 32 {
            eprintln!("leading-zero P-256 key after {} keys", attempt + 1);
            return key;
        }
    }
    panic!("5,000 P-256 keys from ssh-keygen and none with a leading zero byte")
}

/// The length of the private scalar's `mpint` in an unencrypted OpenSSH
/// ECDSA key file (the format is in OpenSSH's PROTOCOL.key).
pub fn p256_scalar_len(path: &Path) -> usize {
    use base64::Engine;
    let text = fs::read_to_string(path).expect("reading the key");
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 key body");
    let mut wire = Wire(&bytes[b"openssh-key-v1\0".len()..]);
    assert_eq!(wire.string(), b"none", "an unencrypted key");
    wire.string(); // kdf name
    wire.string(); // kdf options
    wire.u32(); // number of keys
    wire.string(); // public key
    let mut private = Wire(wire.string());
    private.u32(); // checkint
    private.u32(); // checkint
    assert_eq!(private.string(), b"ecdsa-sha2-nistp256");
    private.string(); // curve
    private.string(); // public point
    private.string().len()
}

/// Reads SSH wire format (big-endian lengths).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn u32(&mut self) -> u32 {
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_be_bytes(head.try_into().expect("4 bytes"))
    }

    fn string(&mut self) -> &'a [u8] {
        let len = self.u32() as usize;
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        head
    }
}

/// `<type> <base64>` of a public key line (no comment).
pub fn key_part(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name known_hosts uses for `host:port`.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// A running sshd; killed when dropped.
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
    port: u16,
    /// The server's host keys' public lines: ed25519, then rsa.
    pub host_ed25519: String,
    pub host_rsa: String,
}

impl Sshd {
    /// On 127.0.0.1 and a free port, letting in `authorized` keys.
    pub fn start(authorized: &[&KeyPair]) -> Self {
        Self::start_at(LOCALHOST, super::free_port(), authorized)
            .unwrap_or_else(|log| panic!("sshd did not start:\n{log}"))
    }

    /// Like [`Sshd::start`], without `AcceptEnv GIT_PROTOCOL` (sshd's
    /// default): git on it speaks protocol v0.
    pub fn start_without_accept_env(authorized: &[&KeyPair]) -> Self {
        Self::start_with(LOCALHOST, super::free_port(), authorized, false, "")
            .unwrap_or_else(|log| panic!("sshd did not start:\n{log}"))
    }

    /// On 127.0.0.1, letting in no key by itself: only the user
    /// certificates `ca` signed (`TrustedUserCAKeys`, see [`certify`]).
    pub fn start_trusting_user_ca(ca: &KeyPair) -> Self {
        let extra = format!("TrustedUserCAKeys {}.pub\n", ca.path.display());
        Self::start_with(LOCALHOST, super::free_port(), &[], true, &extra)
            .unwrap_or_else(|log| panic!("sshd did not start:\n{log}"))
    }

    /// On `[::1]` and a free port (IPv6 loopback), letting in `authorized` keys.
    pub fn start_v6(authorized: &[&KeyPair]) -> Self {
        Self::start_at("::1", super::servers::free_port_v6(), authorized)
            .unwrap_or_else(|log| panic!("sshd did not start on [::1]:\n{log}"))
    }

    /// On port 22 of some 127.0.0.x (x from 2), for scp-like URLs, which
    /// cannot name a port.
    pub fn start_on_port_22(authorized: &[&KeyPair]) -> Self {
        let mut last = String::new();
        for x in 2..60 {
            match Self::start_at(&format!("127.0.0.{x}"), 22, authorized) {
                Ok(sshd) => return sshd,
                Err(log) => last = log,
            }
        }
        panic!("no 127.0.0.x:22 was free for sshd; last log:\n{last}")
    }

    fn start_at(host: &str, port: u16, authorized: &[&KeyPair]) -> Result<Self, String> {
        Self::start_with(host, port, authorized, true, "")
    }

    fn start_with(
        host: &str,
        port: u16,
        authorized: &[&KeyPair],
        accept_git_protocol: bool,
        extra_config: &str,
    ) -> Result<Self, String> {
        require_ssh_tools();
        assert!(
            host.starts_with("127.") || host == "::1",
            "sshd only listens on loopback"
        );
        let dir = super::tempdir("sshd");
        let host_ed25519 = keygen(dir.path(), "host_ed25519", "ed25519", "").public;
        let host_rsa = keygen(dir.path(), "host_rsa", "rsa", "").public;
        let keys: Vec<&str> = authorized.iter().map(|k| k.public.as_str()).collect();
        fs::write(dir.path().join("authorized_keys"), keys.join("\n") + "\n")
            .expect("writing authorized_keys");
        let config = dir.path().join("sshd_config");
        let text = sshd_config(dir.path(), host, port, accept_git_protocol) + extra_config;
        fs::write(&config, text).expect("writing sshd_config");
        // sshd insists on its privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
        let log = fs::File::create(dir.path().join("sshd.log")).expect("sshd log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning sshd");
        let mut sshd = Sshd {
            child,
            dir,
            host: host.to_string(),
            port,
            host_ed25519,
            host_rsa,
        };
        sshd.wait_listening()?;
        Ok(sshd)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let ready = super::poll_until(super::DEADLINE, || {
            matches!(self.child.try_wait(), Ok(None))
                && TcpStream::connect((self.host.as_str(), self.port)).is_ok()
                && self.log().contains("Server listening")
        });
        match ready {
            true => Ok(()),
            false => {
                let _ = self.child.kill();
                Err(self.log())
            }
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ssh://root@HOST:PORT/abs/path` (`[::1]` for IPv6).
    pub fn url(&self, repo: &Path) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("ssh://{}@{host}:{}{}", user(), self.port, repo.display())
    }

    /// `<name> <ed25519 host key>` for this server as seen on `port`.
    pub fn known_hosts_line(&self, port: u16) -> String {
        let name = known_hosts_name(&self.host, port);
        format!("{name} {}", key_part(&self.host_ed25519))
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd logged (LogLevel VERBOSE: logins, env requests, commands).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The `GIT_PROTOCOL` each upload-pack so far was started with (empty
    /// when the client's variable did not get through).
    pub fn upload_pack_protocols(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join(UPLOAD_PACK_LOG))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim_start_matches("GIT_PROTOCOL=").to_string())
            .collect()
    }

    /// Successful public key logins so far.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The login name of the tests' user (root in CI).
pub fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test user has a passwd entry")
}

/// `<dir>/bin/git-upload-pack`: notes the `GIT_PROTOCOL` it was started
/// with in `<dir>/upload-pack.log`, then runs the real one. Returns the PATH
/// for sshd's sessions: that directory, then the real one's.
fn recording_upload_pack(dir: &Path) -> String {
    let real = which("git-upload-pack")
        .unwrap_or_else(|| super::git::git_exec_path().join("git-upload-pack"));
    let real_dir = real.parent().expect("git-upload-pack's directory");
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("creating sshd's bin directory");
    let script = format!(
        "#!/bin/sh\necho \"GIT_PROTOCOL=$GIT_PROTOCOL\" >> '{}'\nexec '{}' \"$@\"\n",
        dir.join(UPLOAD_PACK_LOG).display(),
        real.display()
    );
    let wrapper = bin.join("git-upload-pack");
    fs::write(&wrapper, script).expect("writing the git-upload-pack wrapper");
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the git-upload-pack wrapper");
    format!("{}:{}", bin.display(), real_dir.display())
}

/// Where [`recording_upload_pack`] writes, in the server's directory.
const UPLOAD_PACK_LOG: &str = "upload-pack.log";

fn sshd_config(dir: &Path, host: &str, port: u16, accept_git_protocol: bool) -> String {
    let path = recording_upload_pack(dir);
    let d = dir.display();
    let accept_env = match accept_git_protocol {
        true => "AcceptEnv GIT_PROTOCOL\n",
        false => "",
    };
    format!(
        "Port {port}\n\
         ListenAddress {host}\n\
         HostKey {d}/host_ed25519\n\
         HostKey {d}/host_rsa\n\
         PidFile none\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         {accept_env}\
         SetEnv PATH={path}:/usr/bin:/bin\n\
         LogLevel VERBOSE\n"
    )
}
