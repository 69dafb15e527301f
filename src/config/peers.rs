//! `--peers` and `--peer-secret-file` ([`PeersConfig`]): the list parses,
//! the secret file reads, and both come together with `--http-bind` (hints
//! arrive on the HTTP endpoint and are only sent after a webhook or
//! `POST /sync` it accepted). Every mistake is reported at once.

use super::{read_secret_file, Checker};
use crate::cli::Flag;
use crate::peers::{resolve, PeersConfig};

impl<'a> Checker<'a> {
    /// `None` without `--peers` (or when something is wrong: reported).
    pub(super) fn peers(&mut self) -> Option<PeersConfig> {
        let list = self.raw(Flag::Peers);
        let secret_path = self.raw(Flag::PeerSecretFile);
        let names = list.and_then(|raw| match resolve::parse_list(raw) {
            Ok(names) if names.is_empty() => {
                self.fail(Flag::Peers, "names no peer");
                None
            }
            Ok(names) => Some(names),
            Err(errors) => {
                for e in errors {
                    self.fail(Flag::Peers, e);
                }
                None
            }
        });
        let secret = secret_path.and_then(|path| match read_secret_file(path) {
            Ok(secret) => {
                self.warn_if_placeholder(Flag::PeerSecretFile, Some(path), &secret);
                Some(secret)
            }
            Err(e) => {
                self.fail(Flag::PeerSecretFile, e);
                None
            }
        });
        match (list.is_some(), secret_path.is_some()) {
            (true, false) => self.fail(
                Flag::Peers,
                format!(
                    "requires {}: the replicas sign their hints with a shared secret \
                     (mount the same Secret in every replica)",
                    self.cli.label(Flag::PeerSecretFile)
                ),
            ),
            (false, true) => self.fail(
                Flag::PeerSecretFile,
                format!("is only used with {}", self.cli.label(Flag::Peers)),
            ),
            _ => {}
        }
        if list.is_some() && self.raw(Flag::HttpBind).is_none() {
            self.fail(
                Flag::Peers,
                format!(
                    "requires {}: hints are sent to and received on the HTTP endpoint",
                    self.cli.label(Flag::HttpBind)
                ),
            );
        }
        // Parsed (and a bad value reported) by the http checks; read quietly.
        let unsigned = self
            .value(Flag::IncomingWebhookAllowUnsigned)
            .and_then(|v| super::syntax::parse_go_bool(v).ok());
        if list.is_some() && unsigned == Some(true) {
            // Each unauthenticated request would make every replica fetch:
            // N times the forge load, sent by strangers.
            self.fail(
                Flag::Peers,
                format!(
                    "cannot be used with {}: anyone could then make every replica fetch \
                     from the forge; give the webhooks a secret ({}) instead",
                    self.cli.label(Flag::IncomingWebhookAllowUnsigned),
                    self.cli.label(Flag::IncomingWebhookSecretFile)
                ),
            );
        }
        let secret_file = std::path::absolute(secret_path?).ok()?;
        Some(PeersConfig {
            names: names?,
            secret_file,
            secret: secret?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;

    fn secret_file(dir: &tempfile::TempDir, content: &str) -> String {
        let path = dir.path().join("peer-secret");
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    #[test]
    fn peers_with_a_secret_and_http_bind() {
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "0123456789abcdef\n");
        let c = config(
            &with(&[
                "--http-bind",
                ":8081",
                "--peers",
                "site-peers.default.svc.cluster.local:8081",
                "--peer-secret-file",
                &secret,
            ]),
            &[],
        );
        let peers = c.peers.expect("--peers set");
        assert_eq!(peers.names.len(), 1);
        assert_eq!(peers.names[0].host, "site-peers.default.svc.cluster.local");
        assert_eq!(peers.names[0].port, 8081);
        assert_eq!(peers.secret.expose(), b"0123456789abcdef");
        // The environment works too.
        let c = config(
            &with(&["--http-bind", ":8081"]),
            &[
                ("GITSYNC_PEERS", "10.0.0.1:8081,10.0.0.2:8081"),
                ("GITSYNC_PEER_SECRET_FILE", &secret),
            ],
        );
        assert_eq!(c.peers.expect("from the environment").names.len(), 2);
        assert!(config(&base(), &[]).peers.is_none());
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let p = problems(&with(&["--peers", "a,b:0"]), &[]);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].contains("--peers") && p[0].contains("no port"),
            "{}",
            p[0]
        );
        assert!(p[1].contains("1 to 65535"), "{}", p[1]);
        assert!(p[2].contains("requires --peer-secret-file"), "{}", p[2]);
        assert!(p[3].contains("requires --http-bind"), "{}", p[3]);

        let p = problems(
            &with(&["--peer-secret-file", "/nonexistent/peer-secret"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].contains("cannot read"), "{}", p[0]);
        assert!(p[1].contains("only used with --peers"), "{}", p[1]);

        let dir = tempfile::tempdir().unwrap();
        let empty = secret_file(&dir, "\n");
        let p = problems(
            &with(&[
                "--http-bind",
                ":1",
                "--peers",
                "x:1",
                "--peer-secret-file",
                &empty,
            ]),
            &[],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("is empty"), "{}", p[0]);
    }

    #[test]
    fn unsigned_webhooks_cannot_reach_the_peers() {
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(&dir, "0123456789abcdef\n");
        let p = problems(
            &with(&[
                "--http-bind",
                ":1",
                "--peers",
                "x:1",
                "--peer-secret-file",
                &secret,
                "--incoming-webhook-allow-unsigned",
            ]),
            &[],
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("--peers") && p[0].contains("--incoming-webhook-allow-unsigned"),
            "{}",
            p[0]
        );
    }
}
