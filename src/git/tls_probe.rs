//! Whether a server speaks TLS on a port an `http://` URL names. A TLS
//! port answers plain HTTP with a 400 (nginx: "The plain HTTP request was
//! sent to HTTPS port") or by closing the connection, and neither says
//! why. [`speaks_tls`] tries one TLS handshake to the same host and port:
//! the certificate is not verified (only the protocol matters) and nothing
//! is sent over the session (no request, so no credentials, headers or
//! cookies). The caller skips it when a proxy is in use.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// The handshake never takes longer than this (or what the caller allows).
pub const TLS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// True when a TLS handshake with `host:port` (an IPv6 literal without
/// brackets, as [`super::url_host`] gives it) completes, or the server
/// answers it with a TLS alert (it speaks TLS but refuses, e.g. no common
/// cipher). False when it answers something else, closes, or does not
/// answer within `timeout`.
pub fn speaks_tls(host: &str, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(name) = ServerName::try_from(host.to_string()) else {
        return false;
    };
    let Some(config) = config() else {
        return false;
    };
    let Ok(mut connection) = ClientConnection::new(config, name) else {
        return false;
    };
    let left = || deadline.saturating_duration_since(Instant::now());
    let Ok(mut socket) = super::transport::connect_tcp(host, port, left) else {
        return false;
    };
    while connection.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || socket.set_read_timeout(Some(left)).is_err()
            || socket.set_write_timeout(Some(left)).is_err()
        {
            return false;
        }
        if let Err(e) = connection.complete_io(&mut socket) {
            return is_tls_refusal(&e);
        }
    }
    // Said goodbye politely; what happens to it does not matter.
    connection.send_close_notify();
    let _ = connection.write_tls(&mut socket);
    true
}

/// A failed handshake whose failure the server said in TLS: an alert, or
/// a TLS version or feature rustls does not speak.
fn is_tls_refusal(e: &io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(_) | rustls::Error::PeerIncompatible(_))
    )
}

fn config() -> Option<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(schemes)))
        .with_no_client_auth();
    Some(Arc::new(config))
}

/// Accepts any certificate: the handshake only asks "is this TLS?", and
/// nothing is sent over the session.
#[derive(Debug)]
struct AnyCertificate(Vec<SignatureScheme>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A plain HTTP server answers the ClientHello with a 400 page: not TLS.
    #[test]
    fn a_plain_http_server_does_not_speak_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        assert!(!speaks_tls("127.0.0.1", port, Duration::from_secs(5)));
        server.join().expect("server");
    }

    /// A server that answers the ClientHello with a TLS alert (no common
    /// cipher, say) speaks TLS.
    #[test]
    fn a_server_answering_with_a_tls_alert_speaks_tls() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            // A fatal handshake_failure alert record.
            let _ = s.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
        });
        assert!(speaks_tls("127.0.0.1", port, Duration::from_secs(5)));
        server.join().expect("server");
    }

    /// Nobody listening: not TLS, and no hang.
    #[test]
    fn a_closed_port_does_not_speak_tls() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        assert!(!speaks_tls("127.0.0.1", port, Duration::from_secs(5)));
    }
}
