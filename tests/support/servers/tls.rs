//! TLS for the https tests: [`TestCa`], a throw-away CA made with openssl,
//! and [`TlsProxy`], a TLS-terminating proxy in front of a plain server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::*;

/// Panics with an installation hint unless `program` runs (`program <version_arg>`).
fn require_tool(program: &str, version_arg: &str, hint: &str) {
    let ok = Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!("`{program}` is not usable (`{program} {version_arg}` failed): {hint}");
    }
}

const OPENSSL_HINT: &str = "install the OpenSSL CLI (Debian/Ubuntu: apt-get install openssl)";

/// OpenSSL configuration for [`TestCa`]: self-contained, so the host's
/// openssl.cnf plays no part. Sections are chosen with `-extensions`.
const TEST_CA_OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = git-sidecar-it (overridden by -subj)

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
";

/// A certificate authority made for one test with the `openssl` CLI: a
/// self-signed CA (`ca_pem`) and a server certificate for 127.0.0.1
/// (subjectAltName `IP:127.0.0.1`, `DNS:localhost`) signed by it
/// (`cert_pem`, private key `key_pem`). EC P-256 keys, valid for two days.
/// The files live in a temporary directory removed on drop.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate: what a client must trust.
    pub ca_pem: PathBuf,
    /// The server certificate (leaf only; the CA is the trust anchor).
    pub cert_pem: PathBuf,
    /// The server certificate's private key (PKCS#8, unencrypted).
    pub key_pem: PathBuf,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        require_tool("openssl", "version", OPENSSL_HINT);
        let dir = crate::support::tempdir("test-ca");
        let d = dir.path();
        let cnf = d.join("openssl.cnf");
        std::fs::write(&cnf, TEST_CA_OPENSSL_CNF).expect("writing openssl.cnf");
        let p = |name: &str| d.join(name).to_string_lossy().into_owned();
        let cnf_s = p("openssl.cnf");
        // A distinct name per CA: two CAs sharing a subject would make a
        // verifier holding the wrong one report a bad signature instead of
        // an unknown issuer.
        let ca_subject = format!(
            "/CN=git-sidecar-it throw-away CA {:016x}",
            fastrand::u64(..)
        );
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            d,
            &[
                &["req", "-x509", "-config", &cnf_s, "-extensions", "ca_ext"][..],
                &["-subj", &ca_subject][..],
                &ec[..],
                &["-nodes", "-keyout", &p("ca.key"), "-out", &p("ca.pem")],
                &["-days", "2"],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req", "-new", "-config", &cnf_s, "-subj", "/CN=127.0.0.1"][..],
                &ec[..],
                &[
                    "-nodes",
                    "-keyout",
                    &p("server.key"),
                    "-out",
                    &p("server.csr"),
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &p("server.csr"),
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca.key"),
                "-set_serial",
                &format!("0x{:016x}", fastrand::u64(1..)),
                "-days",
                "2",
                "-extfile",
                &cnf_s,
                "-extensions",
                "server_ext",
                "-out",
                &p("server.pem"),
            ],
        );
        TestCa {
            ca_pem: d.join("ca.pem"),
            cert_pem: d.join("server.pem"),
            key_pem: d.join("server.key"),
            dir,
        }
    }
}

/// Runs `openssl <args>` in `dir` (isolated from the host's OPENSSL_CONF),
/// panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("OPENSSL_CONF", dir.join("openssl.cnf"))
        .env("RANDFILE", dir.join(".rnd"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): {OPENSSL_HINT}"));
    if !out.status.success() {
        panic!(
            "openssl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The TLS proxy run by [`TlsProxy`]: `python3 - CERT KEY TARGET_PORT
/// [CIPHERS]` (CIPHERS: TLS 1.2 only, with these OpenSSL cipher names).
/// Listens on 127.0.0.1:0, prints the port, then for each connection (one
/// thread each) does the TLS handshake and relays decrypted bytes to and
/// from 127.0.0.1:TARGET_PORT in a single select loop (an SSL object must
/// not be used from two threads at once). Logs one line per event on
/// stderr; exits when its stdin closes (the test process went away).
const TLS_PROXY_PY: &str = r#"
import os, select, socket, ssl, sys, threading

cert, key, target_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
if len(sys.argv) > 4:
    # An older server: TLS 1.2 with only these (OpenSSL-named) ciphers.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(sys.argv[4])
ctx.load_cert_chain(cert, key)

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()

def send_all_tls(tls, data):
    view = memoryview(data)
    while view:
        try:
            n = tls.send(view)
            view = view[n:]
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], 30)
        except ssl.SSLWantReadError:
            select.select([tls], [], [], 30)

def relay(tls, plain):
    tls.setblocking(False)
    while True:
        if tls.pending():
            readable = [tls]
        else:
            readable, _, _ = select.select([tls, plain], [], [], 120)
            if not readable:
                log("idle connection closed")
                return
        if tls in readable:
            try:
                data = tls.recv(64 * 1024)
            except ssl.SSLWantReadError:
                data = None
            except (ssl.SSLError, OSError) as e:
                log("client read error: %s" % e)
                return
            if data == b"":
                return
            if data:
                plain.sendall(data)
        if plain in readable:
            data = plain.recv(64 * 1024)
            if not data:
                return
            send_all_tls(tls, data)

def serve(conn, peer):
    tls = plain = None
    try:
        conn.settimeout(30)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("handshake failed from %s:%d: %s" % (peer[0], peer[1], e))
            return
        log("handshake ok from %s:%d (%s)" % (peer[0], peer[1], tls.version()))
        plain = socket.create_connection(("127.0.0.1", target_port), timeout=30)
        plain.settimeout(None)
        relay(tls, plain)
    except Exception as e:
        log("relay error: %r" % (e,))
    finally:
        for s in (tls, plain, conn):
            if s is not None:
                try:
                    s.close()
                except Exception:
                    pass

def watch_stdin():
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
threading.Thread(target=watch_stdin, daemon=True).start()
print(listener.getsockname()[1], flush=True)
while True:
    conn, peer = listener.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"#;

const PYTHON_HINT: &str =
    "install Python 3 with its ssl module (Debian/Ubuntu: apt-get install python3 openssl)";

/// A TLS-terminating TCP proxy on 127.0.0.1:0 in front of `target` (e.g. an
/// [`HttpGit`], which makes `https://127.0.0.1:PORT/<name>` work). It is a
/// `python3` process using the `ssl` module (no TLS crate among the test
/// dependencies); it is killed when this value is dropped.
pub struct TlsProxy {
    child: Child,
    addr: SocketAddr,
    log_dir: tempfile::TempDir,
}

impl TlsProxy {
    /// Serves the certificate chain `cert_pem` with key `key_pem` (PEM files)
    /// and forwards decrypted bytes to `target`, which must be on 127.0.0.1.
    pub fn start(target: SocketAddr, cert_pem: &Path, key_pem: &Path) -> Self {
        Self::start_offering(target, cert_pem, key_pem, None)
    }

    /// As [`TlsProxy::start`], as a server that speaks TLS 1.2 only, with
    /// the OpenSSL-named `ciphers` only (an older server's configuration).
    pub fn start_with_ciphers(
        target: SocketAddr,
        cert_pem: &Path,
        key_pem: &Path,
        ciphers: &str,
    ) -> Self {
        Self::start_offering(target, cert_pem, key_pem, Some(ciphers))
    }

    fn start_offering(
        target: SocketAddr,
        cert_pem: &Path,
        key_pem: &Path,
        ciphers: Option<&str>,
    ) -> Self {
        assert!(
            target.ip().is_loopback(),
            "TlsProxy only forwards to 127.0.0.1, got {target}"
        );
        require_tool("python3", "--version", PYTHON_HINT);
        let log_dir = crate::support::tempdir("tls-proxy");
        let script = log_dir.path().join("tls_proxy.py");
        std::fs::write(&script, TLS_PROXY_PY).expect("writing the TLS proxy script");
        let log_path = log_dir.path().join("tls-proxy.log");
        let log = std::fs::File::create(&log_path).expect("creating the TLS proxy log");
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&script)
            .arg(cert_pem)
            .arg(key_pem)
            .arg(target.port().to_string())
            .args(ciphers)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 ({e}): {PYTHON_HINT}"));
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let port = match (read, line.trim().parse::<u16>()) {
            (Ok(_), Ok(port)) => port,
            (read, _) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "the TLS proxy (python3 {}) did not report its port (read: {read:?}, \
                     line: {line:?}, exit: {status:?}); {PYTHON_HINT}\n--- its stderr ---\n{}",
                    script.display(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        TlsProxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("https://{LOCALHOST}:{}/{name}", self.port())
    }

    /// What the proxy logged: one line per handshake (ok or failed) and per error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("tls-proxy.log")).unwrap_or_default()
    }

    /// Completed TLS handshakes so far.
    pub fn handshakes_ok(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("handshake ok"))
            .count()
    }

    /// Failed TLS handshakes so far (e.g. the client rejected the certificate).
    pub fn handshakes_failed(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("handshake failed"))
            .count()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
