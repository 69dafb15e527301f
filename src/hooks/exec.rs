//! Hook programs: the post-publish exechook (async, on tokio) and the
//! pre-publish gate (blocking, called from the sync pass).
//!
//! Both run the configured program directly (no shell) in the new worktree,
//! with our environment plus `GITSYNC_HASH`, `GITSYNC_PREVIOUS_HASH`,
//! `GITSYNC_REF` and `GITSYNC_REPO`, stdin empty, stdout and stderr captured
//! (the newest 64 KiB of each), and kill the program at the timeout. The
//! program is the leader of its own process group, so a timeout also kills
//! whatever it started (a shell script's `sleep`, say).

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, ReadBuf};

use super::output::{describe_output, describe_status, Tail, CAPTURE_BYTES, ERROR_TAIL_BYTES};
use super::ExecHookConfig;
use super::{hook_env, Publish, SECRET_ENV};

/// The flag that carries the exechook's arguments (named in errors).
pub(super) const EXECHOOK_ARG_FLAG: &str = "--exechook-arg";
/// The flag that carries the gate's arguments (named in errors).
const GATE_ARG_FLAG: &str = "--pre-publish-exechook-arg";

/// How long output is still collected after the program exited, for
/// descendants that keep the pipes open.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// How often the gate polls the program.
const GATE_POLL: Duration = Duration::from_millis(10);

/// The hook's process, shared by the exec hook and the gate: no shell, in
/// the worktree, our environment minus our secrets plus the hook variables
/// and every `--git-config` pair for the git it may run (see
/// [`crate::git::cli_config`]), output captured, in its own process group
/// (a timeout kills all of it).
fn hook_command(config: &ExecHookConfig, publish: &Publish) -> std::process::Command {
    let mut command = std::process::Command::new(&config.command);
    command
        .args(&config.args)
        .current_dir(&publish.worktree)
        .envs(hook_env(publish))
        .envs(crate::git::cli_config::env_with(
            &config.git_config,
            &[trust_the_worktree(&publish.worktree)],
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in SECRET_ENV {
        command.env_remove(name);
    }
    if let Some(ssh) = &config.ssh_command {
        command.env("GIT_SSH_COMMAND", ssh);
    }
    command
}

/// `safe.directory` for the worktree the hook runs in: a tree recycled
/// from one an earlier UID wrote (a changed runAsUser with `--group-write`)
/// belongs to that UID, and the hook's git would refuse it ("dubious
/// ownership"). git-sync v4.7.1's hooks trust every directory.
fn trust_the_worktree(worktree: &std::path::Path) -> (String, String) {
    let path = std::fs::canonicalize(worktree).unwrap_or_else(|_| worktree.to_path_buf());
    ("safe.directory".to_string(), path.display().to_string())
}

/// Runs the exechook once: `Ok` on exit 0 within the timeout.
///
/// Dropping the future kills the program (`kill_on_drop`).
pub(super) async fn run_async(
    config: &ExecHookConfig,
    publish: &Publish,
    arg_flag: &str,
) -> Result<(), String> {
    let command = config.command.display().to_string();
    let mut child = tokio::process::Command::from(hook_command(config, publish))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(&config.command, &publish.worktree, &e, arg_flag))?;
    // Dropping this future (cancellation) kills the whole group, not just
    // the leader; disarmed once the program exited by itself.
    let mut group = GroupGuard(child.id().map(pid_of));
    let mut stdout = Tail::new(CAPTURE_BYTES);
    let mut stderr = Tail::new(CAPTURE_BYTES);
    let deadline = tokio::time::Instant::now() + config.timeout;
    let status = {
        let out_pipe = child.stdout.take();
        let err_pipe = child.stderr.take();
        let output = async {
            tokio::join!(drain(out_pipe, &mut stdout), drain(err_pipe, &mut stderr));
        };
        tokio::pin!(output);
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let mut output_done = false;
        let status = loop {
            tokio::select! {
                () = &mut output, if !output_done => output_done = true,
                status = child.wait() => break Some(status),
                () = &mut timer => break None,
            }
        };
        if matches!(status, Some(Ok(_))) && !output_done {
            let grace = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(OUTPUT_GRACE);
            let _ = tokio::time::timeout(grace, &mut output).await;
        }
        status
    };
    match status {
        Some(Ok(status)) => {
            group.disarm();
            finish(&command, status, &stdout, &stderr)
        }
        Some(Err(e)) => Err(format!("waiting for {command}: {e}")),
        None => {
            kill_group(group.disarm());
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(timeout_error(&command, config.timeout, &stdout, &stderr))
        }
    }
}

/// Reads a pipe to its end into `tail` (read errors end it too).
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, tail: &mut Tail) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let mut read_buf = ReadBuf::new(&mut buf);
        let read =
            std::future::poll_fn(|cx| Pin::new(&mut pipe).poll_read(cx, &mut read_buf)).await;
        match read {
            Ok(()) if !read_buf.filled().is_empty() => tail.push(read_buf.filled()),
            _ => return,
        }
    }
}

/// Runs the pre-publish gate synchronously (called from the blocking sync
/// pass, not async): the command in `publish.worktree`, with the hook
/// environment, killed at the timeout. `Ok(())` on exit 0, otherwise a
/// message with the exit status and the newest ~2 KiB of stderr/stdout.
pub fn run_gate(config: &ExecHookConfig, publish: &Publish) -> Result<(), String> {
    let command = config.command.display().to_string();
    let mut child = hook_command(config, publish)
        .spawn()
        .map_err(|e| spawn_error(&config.command, &publish.worktree, &e, GATE_ARG_FLAG))?;
    let group = Some(pid_of(child.id()));
    // Reader threads fill shared tails, so a stuck descendant holding a pipe
    // open cannot block us: we stop waiting for them after a grace period.
    let stdout = Arc::new(Mutex::new(Tail::new(CAPTURE_BYTES)));
    let stderr = Arc::new(Mutex::new(Tail::new(CAPTURE_BYTES)));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut readers = 0;
    if let Some(pipe) = child.stdout.take() {
        readers += usize::from(spawn_reader(pipe, Arc::clone(&stdout), done_tx.clone()));
    }
    if let Some(pipe) = child.stderr.take() {
        readers += usize::from(spawn_reader(pipe, Arc::clone(&stderr), done_tx.clone()));
    }
    drop(done_tx);

    let deadline = Instant::now() + config.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(Some(status)),
            Ok(None) if Instant::now() >= deadline => break Ok(None),
            Ok(None) => std::thread::sleep(GATE_POLL),
            Err(e) => break Err(e),
        }
    };
    let outcome = match status {
        Ok(Some(status)) => Ok(status),
        Ok(None) => {
            kill_group(group);
            let _ = child.kill();
            let _ = child.wait();
            Err(None)
        }
        Err(e) => {
            kill_group(group);
            let _ = child.kill();
            let _ = child.wait();
            Err(Some(e))
        }
    };
    // Let the readers reach the end of the pipes (bounded).
    let grace_end = Instant::now() + OUTPUT_GRACE;
    for _ in 0..readers {
        let left = grace_end.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let stdout = snapshot(&stdout);
    let stderr = snapshot(&stderr);
    match outcome {
        Ok(status) => finish(&command, status, &stdout, &stderr),
        Err(None) => Err(timeout_error(&command, config.timeout, &stdout, &stderr)),
        Err(Some(e)) => Err(format!("waiting for {command}: {e}")),
    }
}

/// Copies `pipe` into `tail` on a thread of its own; `false` when no
/// thread could start (the output is then not kept).
fn spawn_reader(
    mut pipe: impl std::io::Read + Send + 'static,
    tail: Arc<Mutex<Tail>>,
    done: mpsc::Sender<()>,
) -> bool {
    let reader = std::thread::Builder::new()
        .name("hook-output".into())
        .spawn(move || {
            let mut buf = vec![0u8; 8 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => match tail.lock() {
                        Ok(mut tail) => tail.push(&buf[..n]),
                        Err(_) => break,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        });
    reader.is_ok()
}

fn snapshot(tail: &Mutex<Tail>) -> Tail {
    match tail.lock() {
        Ok(tail) => tail.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// `Ok` for exit 0 (output logged at debug), otherwise the error message.
fn finish(command: &str, status: ExitStatus, stdout: &Tail, stderr: &Tail) -> Result<(), String> {
    if status.success() {
        tracing::debug!(
            command,
            stdout = %stdout.text(CAPTURE_BYTES),
            stderr = %stderr.text(CAPTURE_BYTES),
            "hook program succeeded"
        );
        Ok(())
    } else {
        tracing::debug!(
            command,
            stdout = %stdout.text(CAPTURE_BYTES),
            stderr = %stderr.text(CAPTURE_BYTES),
            "hook program failed"
        );
        Err(format!(
            "{command} failed ({}); {}",
            describe_status(status),
            describe_output(stdout, stderr, ERROR_TAIL_BYTES)
        ))
    }
}

fn timeout_error(command: &str, timeout: Duration, stdout: &Tail, stderr: &Tail) -> String {
    format!(
        "{command} did not finish within {} and was killed; {}",
        humantime::format_duration(timeout),
        describe_output(stdout, stderr, ERROR_TAIL_BYTES)
    )
}

/// Why the program could not be started, in words a user can act on.
fn spawn_error(command: &Path, worktree: &Path, error: &std::io::Error, arg_flag: &str) -> String {
    let shown = command.display();
    match error.kind() {
        std::io::ErrorKind::NotFound if !worktree.is_dir() => format!(
            "cannot run {shown}: its working directory {} does not exist",
            worktree.display()
        ),
        std::io::ErrorKind::NotFound => {
            let looks_like_command_line = command
                .to_str()
                .is_some_and(|s| s.trim().contains(char::is_whitespace));
            let hint = if looks_like_command_line {
                format!(
                    "; it is run without a shell, so the whole text is taken as the program's \
                     name: put arguments in {arg_flag}"
                )
            } else {
                format!("; it is run without a shell (put arguments in {arg_flag})")
            };
            format!(
                "cannot run {shown}: no such file (or its #! interpreter is missing){hint}"
            )
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot run {shown}: permission denied (is it executable, and its directory searchable?)"
        ),
        _ => format!("cannot run {shown}: {error}"),
    }
}

fn pid_of(id: u32) -> Pid {
    Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX))
}

/// Kills the process group when dropped while armed.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn disarm(&mut self) -> Option<Pid> {
        self.0.take()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

/// SIGKILL to the program's process group (it is the group's leader).
fn kill_group(group: Option<Pid>) {
    if let Some(pgid) = group {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}
