//! What each hook is told to do ([`HooksConfig`] and its parts): built and
//! validated by `config`, owned here, where they are used.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::SecretBytes;
use crate::types::SecretUrl;

/// Hooks: all optional.
#[derive(Debug, Clone, Default)]
pub struct HooksConfig {
    /// `--exechook-command` (+ `--exechook-arg`), run after each publish.
    pub exec: Option<ExecHookConfig>,
    /// `--webhook-url` and friends (outgoing), sent after each publish.
    pub webhook: Option<OutgoingWebhookConfig>,
    /// `--pre-publish-exechook-command`: gates publishing (non-zero exit = keep the old content).
    pub pre_publish: Option<ExecHookConfig>,
    /// `--reload-process` + `--reload-signal`, after each publish.
    pub reload: Option<ReloadConfig>,
}

/// A program run without a shell.
#[derive(Debug, Clone)]
pub struct ExecHookConfig {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// The wait before each retry (fixed, as in git-sync).
    pub backoff: Duration,
    /// `--git-config`, for the git the program may run.
    pub git_config: crate::git::cli_config::GitConfigPairs,
    /// `GIT_SSH_COMMAND` for the git the program may run (see
    /// [`crate::git::ssh::command::for_hooks`]).
    pub ssh_command: Option<String>,
}

/// An outgoing HTTP notification. `Debug` shows header names only (values
/// may hold tokens) and never the signing secret.
#[derive(Clone)]
pub struct OutgoingWebhookConfig {
    pub url: SecretUrl,
    pub method: String,
    /// `None` = any response counts as success (git-sync's 0 or -1).
    pub success_status: Option<u16>,
    pub timeout: Duration,
    /// The wait before each retry (fixed, as in git-sync).
    pub backoff: Duration,
    /// Extra `Name: value` headers.
    pub headers: Vec<(String, String)>,
    /// Send a JSON body (hash, previous hash, ref, repo, time) instead of none.
    pub json_body: bool,
    /// Sign the body: header `X-Git-Sidecar-Signature-256: sha256=<hex HMAC>`.
    pub signing_secret: Option<SecretBytes>,
}

impl std::fmt::Debug for OutgoingWebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'h>(&'h [(String, String)]);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(name, _)| format!("{name}: REDACTED")))
                    .finish()
            }
        }
        f.debug_struct("OutgoingWebhookConfig")
            .field("url", &self.url.shown())
            .field("method", &self.method)
            .field("success_status", &self.success_status)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("headers", &Headers(&self.headers))
            .field("json_body", &self.json_body)
            .field("signing_secret", &self.signing_secret)
            .finish()
    }
}

/// Signal a process found by name (needs `shareProcessNamespace: true`).
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Matched against /proc/<pid>/comm (the executable name, e.g. `nginx`).
    pub process: String,
    /// Signal number.
    pub signal: i32,
}
