//! The built-in SSH client: one russh session per fetch, on a thread of its
//! own with a current-thread tokio runtime. Why its own runtime: `connect`
//! is a plain blocking function (called from the engine's `spawn_blocking`
//! thread and from unit tests alike), the key exchange and RSA signing are
//! CPU work that should not run on the HTTP server's workers, and the
//! thread's life is the connection's (it ends when either side closes, or
//! when the [`Budget`] runs out, which it polls every 100 ms).
//!
//! The exec channel is bridged to a Unix socket pair; gix gets the other
//! end, read through the same deadline reader as every other transport.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::key::PrivateKeyWithHashAlg;
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use russh::keys::PublicKeyOrCertificate;
use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;

use super::keys::{self, KeyFile};
use super::known_hosts::{self, KnownHosts, Verdict};
use super::{Error, Options, Target};
use crate::git::transport::{Budget, StderrBuffer};

/// How often the session thread checks the budget.
const BUDGET_SLICE: Duration = Duration::from_millis(100);
/// Upper bound for establishing the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep at most this much of the server's stderr for error messages.
const MAX_STDERR: usize = 8192;

/// Opens a session, authenticates, starts `git-upload-pack` and returns our
/// end of the socket pair that carries its stdin/stdout.
pub fn open(
    target: &Target,
    opts: &Options,
    budget: &Budget,
    stderr: StderrBuffer,
) -> Result<UnixStream, Error> {
    let usable = keys::load_usable(&opts.key_files)
        .map_err(|(path, message)| Error::Key { path, message })?;
    let unused: Vec<_> = usable
        .skipped
        .iter()
        .chain(&usable.ignored_certs)
        .cloned()
        .collect();
    for (path, why) in &opts.skipped_keys.new_since_last(&unused) {
        if usable.ignored_certs.iter().any(|(cert, _)| cert == path) {
            tracing::warn!(
                file = %path.display(),
                error = %why,
                "ssh certificate ignored (fix or remove it); offering its key alone"
            );
        } else {
            tracing::warn!(
                file = %path.display(),
                error = %why,
                "ssh key skipped (fix or remove it from --ssh-key-file); logging in with the others"
            );
        }
    }
    let keys = usable.keys;
    let known_hosts = match &opts.known_hosts {
        Some(path) => Some(
            KnownHosts::load(path).map_err(|message| Error::KnownHostsFile {
                path: path.clone(),
                message,
            })?,
        ),
        None => None,
    };
    let (ours, theirs) = UnixStream::pair().map_err(|e| io_err(target, e))?;
    theirs
        .set_nonblocking(true)
        .map_err(|e| io_err(target, e))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let plan = Plan {
        target: target.clone(),
        keys,
        known_hosts,
        budget: budget.clone(),
        stderr,
    };
    std::thread::Builder::new()
        .name("ssh-session".into())
        .spawn(move || plan.run(theirs, ready_tx))
        .map_err(|e| io_err(target, e))?;
    wait_ready(&ready_rx, budget)?;
    Ok(ours)
}

/// Waits for the session thread to say the command runs (or why not).
fn wait_ready(ready: &mpsc::Receiver<Result<(), Error>>, budget: &Budget) -> Result<(), Error> {
    loop {
        budget_error(budget)?;
        match ready.recv_timeout(BUDGET_SLICE) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                budget_error(budget)?;
                return Err(Error::SessionEnded);
            }
        }
    }
}

fn budget_error(budget: &Budget) -> Result<(), Error> {
    if budget.is_expired() {
        Err(Error::Timeout)
    } else if budget.is_interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// A TCP connection to `addr` within `limit`, with `TCP_NODELAY`: an SSH
/// packet per pkt-line write would otherwise wait for the server's delayed
/// ACK (~40 ms an exchange). russh's `Config::nodelay` is applied only by
/// its own `connect`, not to a stream handed to `connect_stream`.
async fn connect_to(
    addr: std::net::SocketAddr,
    limit: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn io_err(target: &Target, source: std::io::Error) -> Error {
    Error::Connect {
        host: target.host.clone(),
        port: target.port_or_default(),
        source,
    }
}

/// Everything the session thread needs.
struct Plan {
    target: Target,
    keys: Vec<KeyFile>,
    known_hosts: Option<KnownHosts>,
    budget: Budget,
    stderr: StderrBuffer,
}

impl Plan {
    /// The thread's body: set up, report, then bridge until either side ends.
    fn run(self, socket: UnixStream, ready: mpsc::Sender<Result<(), Error>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(io_err(&self.target, e)));
                return;
            }
        };
        let budget = self.budget.clone();
        runtime.block_on(async move {
            tokio::select! {
                () = self.session(socket, ready) => {}
                () = budget_watch(&budget) => {}
            }
        });
    }

    async fn session(self, socket: UnixStream, ready: mpsc::Sender<Result<(), Error>>) {
        let (handle, channel) = match self.start().await {
            Ok(started) => started,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let socket = match tokio::net::UnixStream::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(io_err(&self.target, e)));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            return;
        }
        bridge(channel, socket, &self.stderr).await;
        let _ = handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Connect, verify the host, authenticate, exec `git-upload-pack`.
    async fn start(&self) -> Result<(Handle<Verifier>, russh::Channel<client::Msg>), Error> {
        let stream = self.tcp_connect().await?;
        let verifier = Verifier {
            host: self.target.host.clone(),
            port: self.target.port_or_default(),
            known_hosts: self.known_hosts.clone(),
        };
        let mut handle = client::connect_stream(Arc::new(self.client_config()), stream, verifier)
            .await
            .map_err(|e| self.relabel(e))?;
        self.authenticate(&mut handle).await?;
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| self.protocol(e))?;
        // Servers without `AcceptEnv GIT_PROTOCOL` ignore this: protocol v0.
        channel
            .set_env(false, "GIT_PROTOCOL", "version=2")
            .await
            .map_err(|e| self.protocol(e))?;
        channel
            .exec(true, self.target.upload_pack_command())
            .await
            .map_err(|e| self.protocol(e))?;
        Ok((handle, channel))
    }

    async fn tcp_connect(&self) -> Result<tokio::net::TcpStream, Error> {
        let (host, port) = (self.target.host.as_str(), self.target.port_or_default());
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| Error::Resolve {
                host: host.to_string(),
                source,
            })?;
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            let limit = self.budget.remaining().min(CONNECT_TIMEOUT);
            match connect_to(addr, limit).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(io_err(&self.target, last))
    }

    /// russh's defaults, asking first for the host key types known_hosts
    /// lists for this host (as OpenSSH does), so a host known by its RSA key
    /// is not rejected for showing its ed25519 one.
    fn client_config(&self) -> client::Config {
        let mut config = client::Config {
            client_id: russh::SshId::Standard(
                concat!("SSH-2.0-git-sidecar_", env!("CARGO_PKG_VERSION")).into(),
            ),
            ..Default::default()
        };
        if let Some(kh) = &self.known_hosts {
            let known = kh.algorithms_for(&self.target.host, self.target.port_or_default());
            config.preferred.key = prefer(&config.preferred.key, &known).into();
        }
        config
    }

    /// Each key in turn; RSA signs with the best hash the server accepts.
    async fn authenticate(&self, handle: &mut Handle<Verifier>) -> Result<(), Error> {
        let user = self.target.login();
        let mut rsa_hash: Option<Option<HashAlg>> = None;
        for key in &self.keys {
            let hash = if key.key.algorithm().is_rsa() {
                *rsa_hash.get_or_insert(self.rsa_hash(handle).await?)
            } else {
                None
            };
            if let Some(cert) = &key.cert {
                let result = handle
                    .authenticate_openssh_cert(user, Arc::new(key.key.clone()), cert.clone())
                    .await
                    .map_err(|e| self.protocol(e))?;
                if result.success() {
                    return Ok(());
                }
            }
            let key = PrivateKeyWithHashAlg::new(Arc::new(key.key.clone()), hash);
            let result = handle
                .authenticate_publickey(user, key)
                .await
                .map_err(|e| self.protocol(e))?;
            if result.success() {
                return Ok(());
            }
        }
        Err(Error::Auth {
            user: user.to_string(),
            host: self.target.host.clone(),
            files: file_list(self.keys.iter().map(|k| &k.path)),
        })
    }

    /// The server's preferred RSA signature (rsa-sha2-512/256); rsa-sha2-256
    /// when it does not say (OpenSSH 8.8+ refuses SHA-1 `ssh-rsa`).
    async fn rsa_hash(&self, handle: &Handle<Verifier>) -> Result<Option<HashAlg>, Error> {
        let best = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| self.protocol(e))?;
        Ok(best.unwrap_or(Some(HashAlg::Sha256)))
    }

    /// Names the server in a protocol error raised inside russh's handshake.
    fn relabel(&self, e: Error) -> Error {
        match e {
            Error::Protocol { message, .. } => Error::Protocol {
                host: self.target.host.clone(),
                port: self.target.port_or_default(),
                message,
            },
            other => other,
        }
    }

    fn protocol(&self, e: russh::Error) -> Error {
        Error::Protocol {
            host: self.target.host.clone(),
            port: self.target.port_or_default(),
            message: e.to_string(),
        }
    }
}

/// `known` algorithms first (keeping russh's order), then the rest.
fn prefer(default: &[Algorithm], known: &[Algorithm]) -> Vec<Algorithm> {
    let is_known = |a: &Algorithm| known.iter().any(|k| known_hosts::same_key_type(a, k));
    let (mut first, rest): (Vec<_>, Vec<_>) = default.iter().cloned().partition(is_known);
    first.extend(rest);
    first
}

fn file_list<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves once the budget is spent or the sync interrupted.
async fn budget_watch(budget: &Budget) {
    while budget.check().is_ok() {
        tokio::time::sleep(BUDGET_SLICE).await;
    }
}

/// Copies channel data to the socket and socket data to the channel; the
/// server's stderr goes to `stderr`. Ends when the server closes the
/// channel or our side closes the socket.
async fn bridge(
    channel: russh::Channel<client::Msg>,
    socket: tokio::net::UnixStream,
    stderr: &StderrBuffer,
) {
    let (mut from_server, to_server) = channel.split();
    let (mut socket_in, mut socket_out) = socket.into_split();
    let upload = async {
        let mut writer = to_server.make_writer();
        let _ = tokio::io::copy(&mut socket_in, &mut writer).await;
        let _ = to_server.eof().await;
        // Our side is gone: nothing more to deliver.
    };
    let download = async {
        while let Some(msg) = from_server.wait().await {
            if !deliver(msg, &mut socket_out, stderr).await {
                break;
            }
        }
        let _ = socket_out.shutdown().await;
    };
    tokio::select! {
        () = download => {}
        () = upload => {}
    }
}

/// Handles one message from the server; false once the stream is over.
async fn deliver(
    msg: ChannelMsg,
    socket_out: &mut tokio::net::unix::OwnedWriteHalf,
    stderr: &StderrBuffer,
) -> bool {
    match msg {
        ChannelMsg::Data { data } => return socket_out.write_all(&data).await.is_ok(),
        ChannelMsg::ExtendedData { data, ext: 1 } => {
            keep_stderr(stderr, &String::from_utf8_lossy(&data))
        }
        ChannelMsg::ExitStatus { exit_status } if exit_status != 0 => keep_stderr(
            stderr,
            &format!("\n(the remote command exited with status {exit_status})"),
        ),
        ChannelMsg::Failure => keep_stderr(stderr, "the ssh server refused to run git-upload-pack"),
        ChannelMsg::Eof | ChannelMsg::Close => return false,
        _ => {}
    }
    true
}

fn keep_stderr(stderr: &StderrBuffer, text: &str) {
    if let Ok(mut s) = stderr.lock() {
        if s.len() < MAX_STDERR {
            s.push_str(text);
        }
    }
}

/// Checks the server's host key against known_hosts (or accepts any when
/// there is none to check against: `--ssh-known-hosts=false`).
struct Verifier {
    host: String,
    port: u16,
    known_hosts: Option<KnownHosts>,
}

impl Verifier {
    fn verify(&self, key: &PublicKey) -> Result<(), Error> {
        let Some(kh) = &self.known_hosts else {
            return Ok(());
        };
        let name = known_hosts::host_port(&self.host, self.port);
        let file = kh.path().display();
        let offered = format!(
            "the server offered {} key {}",
            key.algorithm().as_str(),
            known_hosts::fingerprint(key)
        );
        match kh.check(&self.host, self.port, key) {
            Verdict::Known => Ok(()),
            Verdict::Unknown => Err(Error::HostKey(format!(
                "{name} is not in {file} ({offered})"
            ))),
            Verdict::Changed { line } => Err(Error::HostKey(format!(
                "the key of {name} changed (line {line} of {file}; {offered})"
            ))),
            Verdict::Revoked { line } => Err(Error::HostKey(format!(
                "the key of {name} is revoked (line {line} of {file})"
            ))),
            Verdict::OnlyCertAuthority { line } => Err(Error::HostKey(format!(
                "{file} names {name} only through a @cert-authority line (line {line}): host \
                 certificates are not supported; add the server's own host key (ssh-keyscan) \
                 ({offered})"
            ))),
        }
    }
}

impl client::Handler for Verifier {
    type Error = Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Error> {
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verify(key).map(|()| true),
            PublicKeyOrCertificate::Certificate(_) => Err(Error::HostKey(format!(
                "{} presented a host certificate, which is not supported",
                known_hosts::host_port(&self.host, self.port)
            ))),
        }
    }
}

/// For russh's handshake, which returns the handler's error type; the host
/// is filled in by `Plan::relabel`.
impl From<russh::Error> for Error {
    fn from(e: russh::Error) -> Self {
        Error::Protocol {
            host: String::new(),
            port: 0,
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::EcdsaCurve;

    #[test]
    fn known_key_types_are_asked_for_first() {
        let default = [
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa { hash: None },
        ];
        let got = prefer(&default, &[Algorithm::Rsa { hash: None }]);
        assert_eq!(
            got,
            vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa { hash: None },
                Algorithm::Ed25519,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256
                },
            ]
        );
        assert_eq!(prefer(&default, &[]), default.to_vec());
    }

    #[tokio::test]
    async fn connections_send_without_waiting_for_acks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect_to(addr, Duration::from_secs(5)).await.unwrap();
        assert!(stream.nodelay().unwrap(), "TCP_NODELAY is not set");
    }
}
