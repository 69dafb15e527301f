//! Validated configuration ("HiArgs"): built from the raw `cli::Cli`, with
//! every cross-flag rule checked and every mistake reported at once.
//! PLACEHOLDER: the struct shape below is the contract; validation is being written.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::RepoUrl;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the sync engine needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Remote URL (credentials inside are redacted in Display).
    pub repo: RepoUrl,
    /// Absolute root directory (symlinks in it resolved if it exists).
    pub root: PathBuf,
    /// The ref to sync: "HEAD", a branch, a tag, or a full 40-hex SHA.
    pub git_ref: String,
    /// Absolute path of the published symlink (relative `--link` is joined onto root).
    pub link: PathBuf,
    pub period: Duration,
    /// Wait between attempts until the first success (defaults to `period`).
    pub init_period: Duration,
    pub sync_timeout: Duration,
    pub one_time: bool,
    /// Consecutive failures tolerated (git-sync semantics: exit when count >= limit); negative = forever.
    pub max_failures: i64,
    /// Same, before the first success (defaults to `max_failures`).
    pub init_max_failures: i64,
    /// Signal number that triggers an immediate sync.
    pub sync_on_signal: Option<i32>,
    /// 0 = full history.
    pub depth: u32,
    /// Absolute path.
    pub touch_file: Option<PathBuf>,
    /// Absolute path.
    pub error_file: Option<PathBuf>,
    pub stale_worktree_timeout: Duration,
    pub group_write: bool,
    /// 0..=9 as git-sync's -v.
    pub verbosity: u8,
    pub log_format: LogFormat,
    /// Deprecation warnings (legacy env vars, v3 flags) to log once tracing is up.
    pub warnings: Vec<String>,
}

/// TEMPORARY STUB.
#[derive(Debug)]
pub enum LoadError {
    Clap(clap::Error),
    Invalid(String),
}

/// TEMPORARY STUB.
pub fn load(_args: Vec<std::ffi::OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, LoadError> {
    let root = PathBuf::from(env("GITSYNC_ROOT").ok_or(LoadError::Invalid("--root".into()))?);
    let repo = env("GITSYNC_REPO").ok_or(LoadError::Invalid("--repo".into()))?;
    Ok(Config {
        repo: RepoUrl::new(repo),
        link: root.join(env("GITSYNC_LINK").unwrap_or("site".into())),
        root,
        git_ref: env("GITSYNC_REF").unwrap_or("HEAD".into()),
        period: Duration::from_millis(500),
        init_period: Duration::from_millis(500),
        sync_timeout: Duration::from_secs(5),
        one_time: env("GITSYNC_ONE_TIME").is_some(),
        max_failures: 0,
        init_max_failures: 0,
        sync_on_signal: None,
        depth: env("GITSYNC_DEPTH").and_then(|d| d.parse().ok()).unwrap_or(1),
        touch_file: None,
        error_file: None,
        stale_worktree_timeout: Duration::ZERO,
        group_write: false,
        verbosity: 0,
        log_format: LogFormat::Json,
        warnings: vec![],
    })
}
