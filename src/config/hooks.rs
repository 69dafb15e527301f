//! Hooks ([`HooksConfig`]): the exec hooks (`--exechook-*`,
//! `--pre-publish-exechook-*`, v3 `--sync-hook-command`), the outgoing
//! webhook (`--webhook-*`) and `--reload-process`/`--reload-signal`. Each is
//! `Some` exactly when its main flag is non-empty; the other flags of a hook
//! that is off are parsed but their ranges are not checked (as git-sync).

use crate::cli::Flag;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::checker::{default_bool, default_duration, default_int, default_str};
use super::syntax::parse_signal;
use super::{read_secret_file, Checker};
use crate::cli::{Cli, Origin, Secret};
use crate::git::cli_config::GitConfigPairs;
pub use crate::hooks::{ExecHookConfig, HooksConfig, OutgoingWebhookConfig, ReloadConfig};
use crate::types::SecretUrl;

/// Hook timeouts and backoffs are at least this (as git-sync).
const MIN_HOOK_DURATION: Duration = Duration::from_secs(1);
/// Header names `--webhook-header` must not set: git-sidecar sets them itself
/// or they frame the body.
const RESERVED_WEBHOOK_HEADERS: &[&str] = &[
    "gitsync-hash",
    "x-git-sidecar-signature-256",
    "content-length",
    "transfer-encoding",
];
/// The longest name /proc/PID/comm holds (TASK_COMM_LEN 16, less the NUL).
const MAX_PROCESS_NAME: usize = 15;

/// The flags of one exec hook.
pub(super) struct ExecHookIds {
    command: Flag,
    /// A deprecated flag that overrides `command` when set (v3's `--sync-hook-command`).
    v3_command: Option<Flag>,
    args: Flag,
    timeout: Flag,
    backoff: Flag,
}

/// Checks `--webhook-url`: an absolute `http://` or `https://` URL with a
/// host. Messages show the URL without password, query or fragment.
pub fn validate_outgoing_webhook_url(raw: &str) -> Result<(), String> {
    let shown = crate::types::shown_url(raw);
    let url = reqwest::Url::parse(raw).map_err(|e| format!("invalid URL {shown:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "{shown:?}: must be an http:// or https:// URL, not {other}://"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(())
}

/// Upper-cases `--webhook-method` and checks that it is an HTTP token.
pub fn parse_http_method(raw: &str) -> Result<String, String> {
    let method = raw.trim().to_ascii_uppercase();
    if method.is_empty() {
        return Err("must not be blank".to_string());
    }
    http::Method::from_bytes(method.as_bytes()).map_err(|_| {
        format!("{raw:?} is not a valid HTTP method (letters, digits and !#$%&'*+-.^_`|~)")
    })?;
    Ok(method)
}

/// Parses one `--webhook-header` entry, `Name: value`: the name (trimmed) must
/// be an HTTP token and not reserved; the value is trimmed and must not
/// contain control characters other than tab (so no CR or LF). Errors never
/// include the value.
pub fn parse_webhook_header(raw: &str) -> Result<(String, String), String> {
    let Some((name, value)) = raw.split_once(':') else {
        return Err("expected \"Name: value\" (no ':' found)".to_string());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("expected \"Name: value\" (the name is empty)".to_string());
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    if RESERVED_WEBHOOK_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name:?} is set by git-sidecar itself"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "the value of {name:?} must not contain control characters (such as CR or LF)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Checks `--reload-process`: a name as /proc/PID/comm shows it.
pub fn validate_process_name(name: &str) -> Result<(), String> {
    if name.contains('/') {
        return Err(format!(
            "{name:?} must be a process name as in /proc/PID/comm (e.g. nginx), not a path"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} must not contain control characters"));
    }
    if name.len() > MAX_PROCESS_NAME {
        let mut end = MAX_PROCESS_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        return Err(format!(
            "{name:?} is longer than {MAX_PROCESS_NAME} bytes, the most /proc/PID/comm holds; \
             the kernel shows its first {MAX_PROCESS_NAME} bytes (e.g. {:?})",
            &name[..end]
        ));
    }
    Ok(())
}

impl<'a> Checker<'a> {
    /// Every hook flag (see the module docs). Values are checked even when
    /// something else is wrong, so that all mistakes show up at once. The
    /// git that exec hooks run sees `git_config` (`--git-config`).
    pub(super) fn hooks(&mut self, git_config: &GitConfigPairs) -> HooksConfig {
        let cli: &'a Cli = self.cli;
        let exec = self.exec_hook(
            ExecHookIds {
                command: Flag::ExechookCommand,
                v3_command: Some(Flag::SyncHookCommand),
                args: Flag::ExechookArg,
                timeout: Flag::ExechookTimeout,
                backoff: Flag::ExechookBackoff,
            },
            &cli.exechook_arg,
            git_config,
        );
        let pre_publish = self.exec_hook(
            ExecHookIds {
                command: Flag::PrePublishExechookCommand,
                v3_command: None,
                args: Flag::PrePublishExechookArg,
                timeout: Flag::PrePublishExechookTimeout,
                backoff: Flag::PrePublishExechookBackoff,
            },
            &cli.pre_publish_exechook_arg,
            git_config,
        );
        let webhook = self.outgoing_webhook();
        let reload = self.reload();
        HooksConfig {
            exec,
            webhook,
            pre_publish,
            reload,
        }
    }

    pub(super) fn exec_hook(
        &mut self,
        ids: ExecHookIds,
        raw_args: &[String],
        git_config: &GitConfigPairs,
    ) -> Option<ExecHookConfig> {
        let mut command = self.raw(ids.command).map(|c| (ids.command, c));
        if let Some(v3) = ids.v3_command {
            if let Some(raw) = self.raw(v3) {
                if command.is_some() {
                    self.warnings.push(format!(
                        "{} overrides {}",
                        self.cli.label(v3),
                        self.cli.label(ids.command)
                    ));
                }
                command = Some((v3, raw));
            }
        }
        let timeout = self.duration_or(ids.timeout, default_duration(ids.timeout));
        let backoff = self.duration_or(ids.backoff, default_duration(ids.backoff));
        let args = self.hook_args(ids.args, raw_args);

        let Some((command_id, command)) = command else {
            if !raw_args.is_empty() {
                let needed = self.cli.label(ids.command);
                self.fail(ids.args, format!("requires {needed}"));
            }
            return None;
        };
        if command.trim().is_empty() {
            self.fail(command_id, "must not be blank");
        }
        self.at_least(ids.timeout, timeout, MIN_HOOK_DURATION);
        self.at_least(ids.backoff, backoff, MIN_HOOK_DURATION);
        let (timeout, backoff) = (timeout?, backoff?);
        Some(ExecHookConfig {
            command: PathBuf::from(command),
            args,
            timeout,
            backoff,
            git_config: git_config.clone(),
            ssh_command: None,
        })
    }

    /// The arguments of an exec hook: as given on the command line, or decoded
    /// from the JSON array in the environment variable.
    pub(super) fn hook_args(&mut self, id: Flag, raw: &[String]) -> Vec<String> {
        let from_env = matches!(self.cli.provenance.origin(id), Some(Origin::Env(_)));
        if !from_env {
            return raw.to_vec();
        }
        let Some(json) = raw.first() else {
            return Vec::new();
        };
        match serde_json::from_str::<Vec<String>>(json) {
            Ok(args) => args,
            Err(e) => {
                self.fail(
                    id,
                    format!(
                        "must be a JSON array of strings, e.g. [\"-s\",\"reload\"] ({e}); \
                         on the command line, repeat the flag instead"
                    ),
                );
                Vec::new()
            }
        }
    }

    pub(super) fn outgoing_webhook(&mut self) -> Option<OutgoingWebhookConfig> {
        let cli: &'a Cli = self.cli;
        let url = self.raw(Flag::WebhookUrl);
        if let Some(raw) = url {
            if let Err(e) = validate_outgoing_webhook_url(raw) {
                self.fail(Flag::WebhookUrl, e);
            }
        }
        let timeout =
            self.duration_or(Flag::WebhookTimeout, default_duration(Flag::WebhookTimeout));
        let backoff =
            self.duration_or(Flag::WebhookBackoff, default_duration(Flag::WebhookBackoff));
        let status = self.int(Flag::WebhookSuccessStatus);
        let headers = self.webhook_headers(&cli.webhook_header);
        let json_body = self
            .bool(Flag::WebhookJsonBody)
            .unwrap_or_else(|| default_bool(Flag::WebhookJsonBody));

        let secret_file = self.raw(Flag::WebhookSigningSecretFile);
        let mut signing_secret = secret_file.and_then(|path| match read_secret_file(path) {
            Ok(secret) => {
                self.warn_if_placeholder(Flag::WebhookSigningSecretFile, Some(path), &secret);
                Some(secret)
            }
            Err(e) => {
                self.fail(Flag::WebhookSigningSecretFile, e);
                None
            }
        });
        if let Some(secret) = self.env_secret(Flag::EnvWebhookSigningSecret) {
            if secret_file.is_some() {
                let other = self.cli.label(Flag::WebhookSigningSecretFile);
                self.fail(
                    Flag::EnvWebhookSigningSecret,
                    format!("cannot be combined with {other}; set only one"),
                );
            }
            signing_secret = Some(secret);
        }

        let Some(url) = url else {
            let mut given: Vec<Flag> = Vec::new();
            if !cli.webhook_header.is_empty() {
                given.push(Flag::WebhookHeader);
            }
            if json_body {
                given.push(Flag::WebhookJsonBody);
            }
            if secret_file.is_some() {
                given.push(Flag::WebhookSigningSecretFile);
            }
            if self.raw(Flag::EnvWebhookSigningSecret).is_some() {
                given.push(Flag::EnvWebhookSigningSecret);
            }
            let needed = self.cli.label(Flag::WebhookUrl);
            for id in given {
                self.fail(id, format!("requires {needed}"));
            }
            return None;
        };

        let method = match self.raw(Flag::WebhookMethod) {
            None => default_str(Flag::WebhookMethod).to_string(),
            Some(raw) => match parse_http_method(raw) {
                Ok(m) => m,
                Err(e) => {
                    self.fail(Flag::WebhookMethod, e);
                    default_str(Flag::WebhookMethod).to_string()
                }
            },
        };
        let success_status = match status {
            None => Some(default_int(Flag::WebhookSuccessStatus)),
            // git-sync: 0, and -1 for backwards compatibility, accept any status.
            Some(0 | -1) => None,
            Some(n) => match u16::try_from(n) {
                Ok(code) if (100..=599).contains(&code) => Some(code),
                _ => {
                    self.fail(
                        Flag::WebhookSuccessStatus,
                        format!("must be an HTTP status from 100 to 599, or 0 for any, got {n}"),
                    );
                    None
                }
            },
        };
        self.at_least(Flag::WebhookTimeout, timeout, MIN_HOOK_DURATION);
        self.at_least(Flag::WebhookBackoff, backoff, MIN_HOOK_DURATION);
        let (timeout, backoff) = (timeout?, backoff?);
        Some(OutgoingWebhookConfig {
            url: SecretUrl::new(url),
            method,
            success_status,
            timeout,
            backoff,
            headers,
            json_body,
            signing_secret,
        })
    }

    /// `--webhook-header` entries; each bad one is reported without its value.
    pub(super) fn webhook_headers(&mut self, raw: &[Secret]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, header) in raw.iter().enumerate() {
            match parse_webhook_header(header.expose()) {
                Ok(h) => out.push(h),
                Err(e) => self.fail(Flag::WebhookHeader, format!("header #{}: {e}", i + 1)),
            }
        }
        out
    }

    pub(super) fn reload(&mut self) -> Option<ReloadConfig> {
        let process = self.raw(Flag::ReloadProcess);
        if let Some(name) = process {
            if let Err(e) = validate_process_name(name) {
                self.fail(Flag::ReloadProcess, e);
            }
        }
        let signal = match self.raw(Flag::ReloadSignal) {
            None => Some(Signal::SIGHUP as i32),
            Some(raw) => match parse_signal(raw) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.fail(Flag::ReloadSignal, e);
                    None
                }
            },
        };
        let Some(process) = process else {
            if self.raw(Flag::ReloadSignal).is_some() {
                let needed = self.cli.label(Flag::ReloadProcess);
                self.fail(Flag::ReloadSignal, format!("requires {needed}"));
            }
            return None;
        };
        Some(ReloadConfig {
            process: process.to_string(),
            signal: signal?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use super::*;

    fn exec_of(c: &Config) -> &ExecHookConfig {
        c.hooks.exec.as_ref().expect("--exechook-command set")
    }

    fn webhook_of(c: &Config) -> &OutgoingWebhookConfig {
        c.hooks.webhook.as_ref().expect("--webhook-url set")
    }

    /// The hooks' git gets git-sync's `GIT_SSH_COMMAND`; one of the
    /// environment gets the same options after it.
    #[test]
    fn hooks_get_the_ssh_command_of_the_ssh_flags() {
        let args = with(&[
            "--exechook-command=/hooks/post",
            "--pre-publish-exechook-command=check",
            "--ssh-key-file=/keys/id",
        ]);
        let c = config(&args, &[]);
        let expected = "ssh -i /keys/id -o StrictHostKeyChecking=yes \
                        -o UserKnownHostsFile=/etc/git-secret/known_hosts";
        assert_eq!(exec_of(&c).ssh_command.as_deref(), Some(expected));
        let gate = c.hooks.pre_publish.as_ref().expect("gate");
        assert_eq!(gate.ssh_command.as_deref(), Some(expected));
        let c = config(&args, &[("GIT_SSH_COMMAND", "ssh -v")]);
        let expected = format!("ssh -v{}", &expected["ssh".len()..]);
        assert_eq!(exec_of(&c).ssh_command.as_deref(), Some(expected.as_str()));
    }

    #[test]
    fn hook_defaults() {
        let c = config(
            &with(&[
                "--exechook-command=/hooks/post",
                "--pre-publish-exechook-command=check",
                "--webhook-url=https://example.com/notify",
                "--reload-process=nginx",
            ]),
            &[],
        );
        let e = exec_of(&c);
        assert_eq!(e.command, PathBuf::from("/hooks/post"));
        assert!(e.args.is_empty());
        assert_eq!(e.timeout, Duration::from_secs(30));
        assert_eq!(e.backoff, Duration::from_secs(3));
        let p = c.hooks.pre_publish.as_ref().expect("pre-publish set");
        assert_eq!(p.command, PathBuf::from("check"));
        assert!(p.args.is_empty());
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.backoff, Duration::from_secs(3));
        let w = webhook_of(&c);
        assert_eq!(w.url.expose(), "https://example.com/notify");
        assert_eq!(w.method, "POST");
        assert_eq!(w.success_status, Some(200));
        assert_eq!(w.timeout, Duration::from_secs(1));
        assert_eq!(w.backoff, Duration::from_secs(3));
        assert!(w.headers.is_empty());
        assert!(!w.json_body);
        assert!(w.signing_secret.is_none());
        let r = c.hooks.reload.as_ref().expect("reload set");
        assert_eq!(r.process, "nginx");
        assert_eq!(r.signal, Signal::SIGHUP as i32);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // An empty value means "no hook", as in git-sync.
        let c = config(&with(&["--exechook-command=", "--webhook-url="]), &[]);
        assert!(c.hooks.exec.is_none() && c.hooks.webhook.is_none());
    }

    #[test]
    fn hook_flags_set_and_from_env() {
        let c = config(
            &with(&[
                "--exechook-command=/bin/sh",
                "--exechook-arg=-c",
                "--exechook-arg",
                "-x",
                "--exechook-arg=echo $GITSYNC_HASH",
                "--exechook-timeout=1m",
                "--exechook-backoff=1s",
                "--webhook-method=put",
                "--webhook-success-status=204",
                "--webhook-timeout=5s",
                "--webhook-backoff=20s",
                "--webhook-json-body",
                "--reload-signal=USR2",
            ]),
            &[
                ("GITSYNC_WEBHOOK_URL", "http://svc:8080/hook?x=1"),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_COMMAND", "/bin/check"),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_ARG", r#"["--strict", "a b"]"#),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT", "2s"),
                ("GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF", "10m"),
                ("GITSYNC_RELOAD_PROCESS", "httpd"),
            ],
        );
        let e = exec_of(&c);
        assert_eq!(e.command, PathBuf::from("/bin/sh"));
        assert_eq!(e.args, ["-c", "-x", "echo $GITSYNC_HASH"]);
        assert_eq!(e.timeout, Duration::from_secs(60));
        assert_eq!(e.backoff, Duration::from_secs(1));
        let p = c.hooks.pre_publish.as_ref().unwrap();
        assert_eq!(p.command, PathBuf::from("/bin/check"));
        assert_eq!(p.args, ["--strict", "a b"]);
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert_eq!(p.backoff, Duration::from_secs(600));
        let w = webhook_of(&c);
        assert_eq!(w.url.expose(), "http://svc:8080/hook?x=1");
        assert_eq!(w.method, "PUT");
        assert_eq!(w.success_status, Some(204));
        assert_eq!(w.timeout, Duration::from_secs(5));
        assert_eq!(w.backoff, Duration::from_secs(20));
        assert!(w.json_body);
        let r = c.hooks.reload.as_ref().unwrap();
        assert_eq!(r.process, "httpd");
        assert_eq!(r.signal, Signal::SIGUSR2 as i32);

        // git-sync's legacy names.
        let c = config(
            &base(),
            &[
                ("GIT_SYNC_EXECHOOK_COMMAND", "/x"),
                ("GIT_SYNC_EXECHOOK_TIMEOUT", "3s"),
                ("GIT_SYNC_EXECHOOK_BACKOFF", "2s"),
                ("GIT_SYNC_WEBHOOK_URL", "https://h/"),
                ("GIT_SYNC_WEBHOOK_METHOD", "GET"),
                ("GIT_SYNC_WEBHOOK_SUCCESS_STATUS", "0"),
                ("GIT_SYNC_WEBHOOK_TIMEOUT", "2s"),
                ("GIT_SYNC_WEBHOOK_BACKOFF", "4s"),
            ],
        );
        assert_eq!(exec_of(&c).timeout, Duration::from_secs(3));
        assert_eq!(exec_of(&c).backoff, Duration::from_secs(2));
        let w = webhook_of(&c);
        assert_eq!((w.method.as_str(), w.success_status), ("GET", None));
        assert_eq!(
            (w.timeout, w.backoff),
            (Duration::from_secs(2), Duration::from_secs(4))
        );
        assert_eq!(c.warnings.len(), 8, "{:?}", c.warnings);
    }

    #[test]
    fn hook_duration_minimums() {
        let p = problems(
            &with(&[
                "--exechook-command=/x",
                "--exechook-timeout=999ms",
                "--exechook-backoff=0",
                "--pre-publish-exechook-command=/y",
                "--pre-publish-exechook-timeout=0s",
                "--pre-publish-exechook-backoff=500ms",
                "--webhook-url=http://h/",
                "--webhook-timeout=100ms",
                "--webhook-backoff=0",
            ]),
            &[],
        );
        let labels = [
            "--exechook-timeout (GITSYNC_EXECHOOK_TIMEOUT)",
            "--exechook-backoff (GITSYNC_EXECHOOK_BACKOFF)",
            "--pre-publish-exechook-timeout (GITSYNC_PRE_PUBLISH_EXECHOOK_TIMEOUT)",
            "--pre-publish-exechook-backoff (GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF)",
            "--webhook-timeout (GITSYNC_WEBHOOK_TIMEOUT)",
            "--webhook-backoff (GITSYNC_WEBHOOK_BACKOFF)",
        ];
        assert_eq!(p.len(), labels.len(), "{p:?}");
        for (line, label) in p.iter().zip(labels) {
            assert!(
                line.starts_with(&format!("{label}: must be at least 1s")),
                "{line}"
            );
        }
        // As git-sync: ranges only matter when the hook is on; syntax always does.
        let c = config(
            &with(&[
                "--exechook-timeout=1ms",
                "--webhook-backoff=0",
                "--webhook-success-status=999",
                "--webhook-method=B@D",
            ]),
            &[],
        );
        assert!(c.hooks.exec.is_none() && c.hooks.webhook.is_none());
        let p = problems(
            &with(&["--exechook-timeout=soon", "--webhook-success-status=ok"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("invalid duration \"soon\""), "{p:?}");
        assert!(p[1].contains("invalid integer \"ok\""), "{p:?}");
    }

    #[test]
    fn webhook_success_status_and_method() {
        let url = "--webhook-url=https://h/x";
        for any in ["0", "-1"] {
            let arg = format!("--webhook-success-status={any}");
            assert_eq!(
                webhook_of(&config(&with(&[url, &arg]), &[])).success_status,
                None
            );
        }
        for (form, code) in [("100", 100), ("599", 599), ("0xc8", 200)] {
            let arg = format!("--webhook-success-status={form}");
            let c = config(&with(&[url, &arg]), &[]);
            assert_eq!(webhook_of(&c).success_status, Some(code), "{form}");
        }
        for bad in ["99", "600", "-2", "70000"] {
            let arg = format!("--webhook-success-status={bad}");
            let p = problems(&with(&[url, &arg]), &[]);
            assert_eq!(
                p,
                vec![format!(
                    "--webhook-success-status (GITSYNC_WEBHOOK_SUCCESS_STATUS): must be an \
                     HTTP status from 100 to 599, or 0 for any, got {bad}"
                )]
            );
        }

        for (form, method) in [("post", "POST"), ("Patch", "PATCH"), ("PURGE", "PURGE")] {
            let arg = format!("--webhook-method={form}");
            assert_eq!(webhook_of(&config(&with(&[url, &arg]), &[])).method, method);
        }
        for bad in ["GE T", "P(OST)", "PO\"ST", "é", " "] {
            let arg = format!("--webhook-method={bad}");
            let p = problems(&with(&[url, &arg]), &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("--webhook-method (GITSYNC_WEBHOOK_METHOD): "),
                "{p:?}"
            );
        }
    }

    #[test]
    fn webhook_url_must_be_http() {
        for good in [
            "http://h",
            "https://h:8443/a?b=c",
            "HTTPS://H/x",
            "http://[::1]:80/",
        ] {
            assert_eq!(validate_outgoing_webhook_url(good), Ok(()), "{good}");
        }
        for bad in [
            "ftp://h/x",
            "file:///tmp/x",
            "h/x",
            "https://",
            "http://:80/",
            "mailto:a@b",
        ] {
            let arg = format!("--webhook-url={bad}");
            let p = problems(&with(&[&arg]), &[]);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with("--webhook-url (GITSYNC_WEBHOOK_URL): "),
                "{p:?}"
            );
        }
        let p = problems(&with(&["--webhook-url=ftp://h/x"]), &[]);
        assert!(p[0].contains("must be an http:// or https:// URL"), "{p:?}");
        // A password in the URL is never shown.
        let p = problems(&base(), &[("GITSYNC_WEBHOOK_URL", "ftp://u:hunter2@h/")]);
        assert!(!p[0].contains("hunter2"), "{p:?}");
        let c = config(&with(&["--webhook-url=https://u:hunter2@h/"]), &[]);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn webhook_headers() {
        assert_eq!(
            parse_webhook_header("Authorization:  Bearer abc \t"),
            Ok(("Authorization".into(), "Bearer abc".into()))
        );
        assert_eq!(
            parse_webhook_header(" X-Empty :"),
            Ok(("X-Empty".into(), String::new()))
        );
        assert_eq!(
            parse_webhook_header("X-Url: http://a:b/c"),
            Ok(("X-Url".into(), "http://a:b/c".into()))
        );
        assert_eq!(
            parse_webhook_header("X-Tab: a\tb"),
            Ok(("X-Tab".into(), "a\tb".into()))
        );
        for bad in [
            "NoColon",
            ": v",
            "Bad Name: v",
            "Bad(Name): v",
            "X-A: a\r\nX-Injected: b",
            "X-A: a\nb",
            "X-A: a\u{0}",
            "Gitsync-Hash: x",
            "content-length: 0",
            "X-Git-Sidecar-Signature-256: sha256=00",
            "Transfer-Encoding: chunked",
        ] {
            assert!(
                parse_webhook_header(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }

        let url = "--webhook-url=https://h/";
        let c = config(
            &with(&[url, "--webhook-header=X-A: 1", "--webhook-header", "X-B:2"]),
            &[],
        );
        assert_eq!(
            webhook_of(&c).headers,
            vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())]
        );
        // The environment takes one header per line.
        let c = config(
            &with(&[url]),
            &[(
                "GITSYNC_WEBHOOK_HEADER",
                "X-A: 1\r\n\nAuthorization: Bearer t0ken\n",
            )],
        );
        let w = webhook_of(&c);
        assert_eq!(w.headers.len(), 2);
        assert_eq!(
            w.headers[1],
            ("Authorization".into(), "Bearer t0ken".into())
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("t0ken"), "{dbg}");
        assert!(dbg.contains("Authorization: REDACTED"), "{dbg}");

        // Errors say which entry is wrong, never its value.
        let p = problems(
            &with(&[
                url,
                "--webhook-header=X-A: ok",
                "--webhook-header=s3cret-token",
            ]),
            &[],
        );
        assert_eq!(
            p,
            vec![
                "--webhook-header (GITSYNC_WEBHOOK_HEADER): header #2: expected \"Name: value\" \
                 (no ':' found)"
                    .to_string()
            ]
        );
        let p = problems(&with(&[url, "--webhook-header=X-A: s3cret\u{7f}"]), &[]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("must not contain control characters"),
            "{p:?}"
        );
        assert!(!p[0].contains("s3cret"), "{p:?}");
    }

    #[test]
    fn webhook_signing_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sign");
        std::fs::write(&f, "s3cret-sign\n").unwrap();
        let file_arg = format!("--webhook-signing-secret-file={}", f.display());
        let url = "--webhook-url=https://h/";

        let c = config(&with(&[url, &file_arg]), &[]);
        assert_eq!(
            webhook_of(&c)
                .signing_secret
                .as_ref()
                .map(SecretBytes::expose),
            Some(&b"s3cret-sign"[..])
        );
        let c = config(
            &with(&[url]),
            &[("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret-env\n")],
        );
        assert_eq!(
            webhook_of(&c)
                .signing_secret
                .as_ref()
                .map(SecretBytes::expose),
            Some(&b"s3cret-env"[..])
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(
            dbg.contains("signing_secret: Some(SecretBytes(REDACTED))"),
            "{dbg}"
        );

        // Both, a missing file, an empty file, and no URL.
        let p = problems(
            &with(&[url, &file_arg]),
            &[("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret-env")],
        );
        assert_eq!(
            p,
            vec![format!(
                "GITSYNC_WEBHOOK_SIGNING_SECRET (environment only): cannot be combined with \
                 --webhook-signing-secret-file (GITSYNC_WEBHOOK_SIGNING_SECRET_FILE); set only one"
            )]
        );
        let missing = dir.path().join("missing").display().to_string();
        let p = problems(
            &with(&[url]),
            &[("GITSYNC_WEBHOOK_SIGNING_SECRET_FILE", missing.as_str())],
        );
        assert!(
            p[0].starts_with(&format!(
                "--webhook-signing-secret-file (GITSYNC_WEBHOOK_SIGNING_SECRET_FILE): \
                 cannot read {missing:?}"
            )),
            "{p:?}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let p = problems(
            &with(&[
                url,
                &format!("--webhook-signing-secret-file={}", empty.display()),
            ]),
            &[],
        );
        assert!(p[0].ends_with("is empty"), "{p:?}");
        let p = problems(&base(), &[("GITSYNC_WEBHOOK_SIGNING_SECRET", "s3cret")]);
        assert_eq!(
            p,
            vec![
                "GITSYNC_WEBHOOK_SIGNING_SECRET (environment only): requires --webhook-url \
                 (GITSYNC_WEBHOOK_URL)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn new_hook_flags_require_their_hook() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sign");
        std::fs::write(&f, "x").unwrap();
        let file_arg = format!("--webhook-signing-secret-file={}", f.display());
        let p = problems(
            &with(&[
                "--exechook-arg=a",
                "--pre-publish-exechook-arg=b",
                "--webhook-header=X-A: 1",
                "--webhook-json-body",
                &file_arg,
                "--reload-signal=TERM",
            ]),
            &[],
        );
        assert_eq!(
            p,
            vec![
                "--exechook-arg (GITSYNC_EXECHOOK_ARG): requires --exechook-command \
                 (GITSYNC_EXECHOOK_COMMAND)",
                "--pre-publish-exechook-arg (GITSYNC_PRE_PUBLISH_EXECHOOK_ARG): requires \
                 --pre-publish-exechook-command (GITSYNC_PRE_PUBLISH_EXECHOOK_COMMAND)",
                "--webhook-header (GITSYNC_WEBHOOK_HEADER): requires --webhook-url \
                 (GITSYNC_WEBHOOK_URL)",
                "--webhook-json-body (GITSYNC_WEBHOOK_JSON_BODY): requires --webhook-url \
                 (GITSYNC_WEBHOOK_URL)",
                "--webhook-signing-secret-file (GITSYNC_WEBHOOK_SIGNING_SECRET_FILE): requires \
                 --webhook-url (GITSYNC_WEBHOOK_URL)",
                "--reload-signal (GITSYNC_RELOAD_SIGNAL): requires --reload-process \
                 (GITSYNC_RELOAD_PROCESS)",
            ]
        );
        // The default false is harmless.
        config(&with(&["--webhook-json-body=false"]), &[]);
    }

    #[test]
    fn exec_hook_args_from_env_are_a_json_array() {
        let c = config(
            &with(&["--exechook-command=/bin/echo"]),
            &[("GITSYNC_EXECHOOK_ARG", r#"["a", "--b", ""]"#)],
        );
        assert_eq!(exec_of(&c).args, ["a", "--b", ""]);
        // The command line replaces the environment.
        let c = config(
            &with(&["--exechook-command=/bin/echo", "--exechook-arg=[x]"]),
            &[("GITSYNC_EXECHOOK_ARG", r#"["a"]"#)],
        );
        assert_eq!(exec_of(&c).args, ["[x]"]);
        for bad in ["reload", r#"["a", 1]"#, r#"{"a": "b"}"#, "[", r#""a""#] {
            let p = problems(
                &with(&["--exechook-command=/bin/echo"]),
                &[("GITSYNC_EXECHOOK_ARG", bad)],
            );
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with(
                    "--exechook-arg (GITSYNC_EXECHOOK_ARG): must be a JSON array of strings"
                ),
                "{p:?}"
            );
        }
        let p = problems(&with(&["--exechook-command=   "]), &[]);
        assert_eq!(
            p,
            vec!["--exechook-command (GITSYNC_EXECHOOK_COMMAND): must not be blank".to_string()]
        );
    }

    /// The git an exec hook or the gate runs sees every `--git-config`
    /// pair, in order (they ride in each hook's config).
    #[test]
    fn exec_hooks_carry_the_git_config_pairs() {
        let c = config(
            &with(&[
                "--exechook-command=/hooks/post",
                "--pre-publish-exechook-command=check",
                "--git-config=core.quotepath:false,safe.directory:/data",
            ]),
            &[],
        );
        let keys = |pairs: &GitConfigPairs| -> Vec<String> {
            pairs.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
        };
        let want = ["core.quotepath=false", "safe.directory=/data"];
        assert_eq!(keys(&c.access.git_config), want);
        assert_eq!(keys(&exec_of(&c).git_config), want);
        let gate = c.hooks.pre_publish.as_ref().expect("gate set");
        assert_eq!(keys(&gate.git_config), want);
    }

    #[test]
    fn v3_sync_hook_command_maps_to_exechook_command() {
        let c = config(&with(&["--sync-hook-command=/hooks/v3"]), &[]);
        assert_eq!(exec_of(&c).command, PathBuf::from("/hooks/v3"));
        assert_eq!(
            c.warnings,
            vec![
                "flag --sync-hook-command has been deprecated, use --exechook-command instead"
                    .to_string()
            ]
        );
        let c = config(&base(), &[("GIT_SYNC_HOOK_COMMAND", "/hooks/env")]);
        assert_eq!(exec_of(&c).command, PathBuf::from("/hooks/env"));
        assert_eq!(
            c.warnings,
            vec![
                "env $GIT_SYNC_HOOK_COMMAND has been deprecated, use --exechook-command instead"
                    .to_string()
            ]
        );
        // It overrides --exechook-command, as in git-sync, with a warning.
        let c = config(
            &with(&["--exechook-command=/new", "--exechook-arg=x"]),
            &[("GIT_SYNC_HOOK_COMMAND", "/old")],
        );
        assert_eq!(exec_of(&c).command, PathBuf::from("/old"));
        assert_eq!(exec_of(&c).args, ["x"]);
        assert!(
            c.warnings.contains(
                &"--sync-hook-command (GIT_SYNC_HOOK_COMMAND) overrides --exechook-command \
                  (GITSYNC_EXECHOOK_COMMAND)"
                    .to_string()
            ),
            "{:?}",
            c.warnings
        );
        // The exechook timings apply to it.
        let p = problems(
            &with(&["--sync-hook-command=/x", "--exechook-timeout=10ms"]),
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("--exechook-timeout"), "{p:?}");
        let p = problems(&with(&["--sync-hook-command= "]), &[]);
        assert_eq!(
            p,
            vec!["--sync-hook-command (GIT_SYNC_HOOK_COMMAND): must not be blank".to_string()]
        );
    }

    #[test]
    fn reload_process_and_signal() {
        for good in ["nginx", "caddy", "php-fpm: maste", "x", "a.b c_d-123456"] {
            assert_eq!(validate_process_name(good), Ok(()), "{good}");
        }
        let long = "sixteen-bytes-xx";
        assert_eq!(long.len(), 16);
        let e = validate_process_name(long).unwrap_err();
        assert!(e.contains("longer than 15 bytes"), "{e}");
        assert!(e.contains("\"sixteen-bytes-x\""), "{e}");
        // Truncation suggestions stay on a character boundary.
        let e = validate_process_name("ééééééééé").unwrap_err();
        assert!(e.contains("\"ééééééé\""), "{e}");
        for bad in ["/usr/sbin/nginx", "a/b", "a\nb"] {
            assert!(validate_process_name(bad).is_err(), "{bad:?}");
        }

        let c = config(
            &base(),
            &[
                ("GITSYNC_RELOAD_PROCESS", "nginx"),
                ("GITSYNC_RELOAD_SIGNAL", "sigquit"),
            ],
        );
        let r = c.hooks.reload.as_ref().unwrap();
        assert_eq!(
            (r.process.as_str(), r.signal),
            ("nginx", Signal::SIGQUIT as i32)
        );
        assert_eq!(
            config(
                &with(&["--reload-process=nginx", "--reload-signal=10"]),
                &[]
            )
            .hooks
            .reload
            .unwrap()
            .signal,
            10
        );

        let p = problems(&with(&["--reload-signal=HUP"]), &[]);
        assert_eq!(
            p,
            vec![
                "--reload-signal (GITSYNC_RELOAD_SIGNAL): requires --reload-process \
                 (GITSYNC_RELOAD_PROCESS)"
                    .to_string()
            ]
        );
        let p = problems(
            &with(&["--reload-process=/usr/sbin/nginx", "--reload-signal=KILL"]),
            &[],
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("--reload-process (GITSYNC_RELOAD_PROCESS): "),
            "{p:?}"
        );
        assert_eq!(
            p[1],
            "--reload-signal (GITSYNC_RELOAD_SIGNAL): SIGKILL cannot be caught"
        );
        let p = problems(
            &with(&["--reload-process=nginx", "--reload-signal=bogus"]),
            &[],
        );
        assert_eq!(
            p,
            vec!["--reload-signal (GITSYNC_RELOAD_SIGNAL): unknown signal \"bogus\"".to_string()]
        );
    }

    #[test]
    fn hook_errors_are_reported_together() {
        let p = problems(
            &with(&[
                "--exechook-command=/x",
                "--exechook-timeout=0",
                "--pre-publish-exechook-command=/y",
                "--pre-publish-exechook-backoff=later",
                "--webhook-url=gopher://h/",
                "--webhook-method=GE T",
                "--webhook-header=oops",
                "--reload-process=/bin/nginx",
                "--period=abc",
            ]),
            &[],
        );
        let all = p.join("\n");
        for expected in [
            "--period (GITSYNC_PERIOD): invalid duration",
            "--exechook-timeout (GITSYNC_EXECHOOK_TIMEOUT): must be at least 1s",
            "--pre-publish-exechook-backoff (GITSYNC_PRE_PUBLISH_EXECHOOK_BACKOFF): invalid duration",
            "--webhook-url (GITSYNC_WEBHOOK_URL): ",
            "--webhook-method (GITSYNC_WEBHOOK_METHOD): ",
            "--webhook-header (GITSYNC_WEBHOOK_HEADER): header #1",
            "--reload-process (GITSYNC_RELOAD_PROCESS): ",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
        assert_eq!(p.len(), 7, "{all}");
    }

    #[test]
    fn hook_secrets_are_not_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sign");
        std::fs::write(&f, "s3cret-file").unwrap();
        let file_arg = format!("--webhook-signing-secret-file={}", f.display());
        let c = config(
            &with(&[
                "--webhook-url=https://user:hunter2@h/",
                "--webhook-header=Authorization: Bearer t0ken-flag",
                &file_arg,
            ]),
            &[("GITSYNC_WEBHOOK_HEADER", "X-Api-Key: t0ken-env")],
        );
        let dbg = format!("{c:?}");
        for secret in ["hunter2", "t0ken", "s3cret"] {
            assert!(!dbg.contains(secret), "{secret} in {dbg}");
        }
        assert!(dbg.contains("Authorization: REDACTED"), "{dbg}");
        let cli =
            Cli::try_parse_with_env(["git-sidecar", "--webhook-header=X: t0ken"], &|k: &str| {
                (k == "GITSYNC_WEBHOOK_SIGNING_SECRET").then(|| "s3cret".to_string())
            })
            .unwrap();
        let dbg = format!("{cli:?}");
        assert!(!dbg.contains("t0ken") && !dbg.contains("s3cret"), "{dbg}");
    }
}
