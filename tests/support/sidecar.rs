//! Runs the built `git-sidecar` binary with a clean environment and its
//! output captured into files that can be read at any time.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::{poll_until, DEADLINE};

/// Path of the binary under test, built by Cargo for integration tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_git-sidecar"))
}

/// Builder for one run of the sidecar.
pub struct Sidecar {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    /// Run as this uid/gid (tests run as root), without HOME.
    user: Option<(u32, u32)>,
    /// RLIMIT_NOFILE (soft, hard) to start with.
    open_files: Option<(u64, u64)>,
    /// Files bind-mounted over these /etc files in a private mount namespace.
    etc_files: Vec<(&'static std::ffi::CStr, PathBuf)>,
    /// The cgroup directories the process joins before exec (one per
    /// hierarchy: cgroup v1 has one for each controller).
    cgroups: Vec<PathBuf>,
}

impl Default for Sidecar {
    fn default() -> Self {
        Self::new()
    }
}

impl Sidecar {
    /// Runs `git-sidecar`.
    pub fn new() -> Self {
        Self::program(bin())
    }

    /// Runs another program the same way (used by the harness self-tests).
    pub fn program(path: impl Into<PathBuf>) -> Self {
        Sidecar {
            program: path.into(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            user: None,
            open_files: None,
            etc_files: Vec::new(),
            cgroups: Vec::new(),
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(it.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Adds an environment variable (the environment starts empty apart
    /// from PATH, HOME and a few basics: no GITSYNC_*/GIT_SYNC_* leak in).
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }

    /// Runs the process as `uid`:`gid` with no HOME (as a container's
    /// arbitrary UID); the working directory must be reachable for it.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Starts the process with this open-file limit (as a container's
    /// `nofile` ulimit).
    pub fn open_file_limit(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Runs the process with `path` as its /etc/resolv.conf (the system
    /// resolver then asks the test's DNS server, see `support::dns`), in a
    /// private mount namespace: the machine's file is untouched. Needs root.
    pub fn resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.etc_files.push((c"/etc/resolv.conf", path.into()));
        self
    }

    /// Runs the process with `path` as its /etc/nsswitch.conf (which
    /// name-service modules glibc consults), the same way as
    /// [`Sidecar::resolv_conf`]. Needs root.
    pub fn nsswitch_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.etc_files.push((c"/etc/nsswitch.conf", path.into()));
        self
    }

    /// Starts the process in the cgroup at `dir` (see `support::cgroup`),
    /// as a container runtime starts a pod's container in its own (joined
    /// before [`Sidecar::user`] drops root: only root may write
    /// `cgroup.procs`).
    pub fn cgroup(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cgroups.push(dir.into());
        self
    }

    pub fn current_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.cwd = Some(d.into());
        self
    }

    fn cmdline(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        for (k, v) in &self.envs {
            s.push_str(&format!(
                " [{}={}]",
                k.to_string_lossy(),
                v.to_string_lossy()
            ));
        }
        s
    }

    /// Starts the process.
    pub fn spawn(self) -> Running {
        let dir = super::tempdir("sidecar");
        let home = dir.path().join("home");
        fs::create_dir_all(&home).expect("creating sidecar HOME");
        let stdout = File::create(dir.path().join("stdout")).expect("creating stdout capture");
        let stderr = File::create(dir.path().join("stderr")).expect("creating stderr capture");
        let cmdline = self.cmdline();
        if !self.program.exists() {
            panic!(
                "binary under test not found at {} (is it built?)",
                self.program.display()
            );
        }
        let mut cmd = Command::new(&self.program);
        cmd.env_clear();
        for var in ["PATH", "TMPDIR", "RUST_LOG", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("HOME", &home)
            .env("LANG", "C")
            .env("TZ", "UTC")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(self.cwd.as_deref().unwrap_or(dir.path()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Own process group, so a crash test can kill it together with
            // any git child processes, like a container dying.
            .process_group(0);
        let user = self.user;
        if user.is_some() {
            cmd.env_remove("HOME");
        }
        let open_files = self.open_files;
        let c_path = |p: &Path| {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::CString::new(p.as_os_str().as_bytes()).expect("a path without NUL")
        };
        let etc_files: Vec<_> = self
            .etc_files
            .iter()
            .map(|(target, source)| (*target, c_path(source)))
            .collect();
        let cgroup_procs: Vec<_> = self
            .cgroups
            .iter()
            .map(|d| c_path(&d.join("cgroup.procs")))
            .collect();
        // SAFETY: prctl, setrlimit, unshare, mount, open, write, close and
        // the set*id calls are async-signal-safe system calls (the C
        // strings were made before the fork); nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for procs in &cgroup_procs {
                    join_cgroup(procs)?;
                }
                if !etc_files.is_empty() {
                    private_etc_files(&etc_files)?;
                }
                if let Some((soft, hard)) = open_files {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        soft,
                        hard,
                    )
                    .map_err(std::io::Error::from)?;
                }
                // Last of what needs root (std's own uid() would drop it
                // before any of the above). Changing the user clears the
                // parent-death signal, so that comes after.
                if let Some((uid, gid)) = user {
                    become_user(uid, gid)?;
                }
                // Never outlive the test thread that started us (e.g. on Ctrl-C).
                nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
        Running {
            child: Mutex::new(child),
            status: Mutex::new(None),
            dir,
            cmdline,
            started: Instant::now(),
        }
    }

    /// Runs to completion; panics (with the logs) if it takes longer than `timeout`.
    pub fn run(self, timeout: Duration) -> Output {
        let running = self.spawn();
        let status = match running.wait_timeout(timeout) {
            Some(s) => s,
            None => {
                let logs = running.logs();
                running.kill9();
                panic!(
                    "{} did not exit within {timeout:?}\n{logs}",
                    running.cmdline
                );
            }
        };
        Output {
            status,
            stdout: running.stdout().into_bytes(),
            stderr: running.stderr().into_bytes(),
        }
    }
}

/// In the child, before exec: moves this process into the cgroup whose
/// `cgroup.procs` is `procs` ("0": the process writing it).
fn join_cgroup(procs: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: plain system calls on a NUL-terminated string and a buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        match written {
            1 => Ok(()),
            _ => Err(error),
        }
    }
}

/// In the child, before exec: drops root for `uid`:`gid` and no
/// supplementary groups.
fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: plain system calls; no pointers but a null, empty group list.
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
    };
    match failed {
        true => Err(std::io::Error::last_os_error()),
        false => Ok(()),
    }
}

/// In the child, before exec: a mount namespace of its own (changes not
/// propagated back), with each source bind-mounted over its /etc file.
fn private_etc_files(files: &[(&std::ffi::CStr, std::ffi::CString)]) -> std::io::Result<()> {
    let check = |rc: i32| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls on NUL-terminated strings.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for (target, source) in files {
            check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
    }
    Ok(())
}

/// `git-sidecar <args> --one-time`, which must exit within 60 s.
pub fn run_one_time<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Sidecar::new()
        .args(args)
        .arg("--one-time")
        .run(Duration::from_secs(60))
}

/// Formats an `Output` for assertion messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A started sidecar process; killed (SIGKILL) when dropped.
pub struct Running {
    child: Mutex<Child>,
    status: Mutex<Option<ExitStatus>>,
    dir: tempfile::TempDir,
    cmdline: String,
    started: Instant,
}

impl Running {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.lock().expect("child lock").id() as i32)
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sends `sig` to the process (not its children).
    pub fn signal(&self, sig: Signal) {
        if self.try_status().is_some() {
            panic!(
                "cannot send {sig:?}: the process already exited\n{}",
                self.logs()
            );
        }
        kill(self.pid(), sig).unwrap_or_else(|e| panic!("kill({sig:?}) failed: {e}"));
    }

    /// SIGKILL to the process and its whole process group (as if the
    /// container died), then reaps it.
    pub fn kill9(&self) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        let pid = self.pid();
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
        let status = self
            .child
            .lock()
            .expect("child lock")
            .wait()
            .expect("waiting for killed process");
        *self.status.lock().expect("status lock") = Some(status);
        status
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut status = self.status.lock().expect("status lock");
        if status.is_none() {
            if let Ok(Some(s)) = self.child.lock().expect("child lock").try_wait() {
                *status = Some(s);
            }
        }
        *status
    }

    /// Waits up to `d` for the process to exit.
    pub fn wait_timeout(&self, d: Duration) -> Option<ExitStatus> {
        let mut result = None;
        poll_until(d, || {
            result = self.try_status();
            result.is_some()
        });
        result
    }

    /// Panics (with logs) if the process has exited.
    pub fn assert_running(&self) {
        if let Some(s) = self.try_status() {
            panic!(
                "the sidecar exited unexpectedly with {}\n{}",
                describe_status(s),
                self.logs()
            );
        }
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(name))
            .map(|s| s.to_string())
            .unwrap_or_else(|e| format!("<cannot read {name}: {e}>"))
    }

    /// Captured stdout so far.
    pub fn stdout(&self) -> String {
        self.read("stdout")
    }

    /// Captured stderr so far.
    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    /// Command line, status and both captured streams, for failure messages.
    pub fn logs(&self) -> String {
        let status = match self.try_status() {
            Some(s) => describe_status(s),
            None => "still running".to_string(),
        };
        let mut stderr = self.stderr();
        // Keep messages readable: the tail is what matters.
        if stderr.len() > 20_000 {
            let cut = stderr.len() - 20_000;
            let cut = (cut..stderr.len())
                .find(|i| stderr.is_char_boundary(*i))
                .unwrap_or(cut);
            stderr = format!("[... {cut} bytes cut ...]\n{}", &stderr[cut..]);
        }
        format!(
            "--- sidecar: {} ({status}, {:?} since start) ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.cmdline,
            self.started.elapsed(),
            self.stdout(),
            stderr
        )
    }

    /// Polls `cond` until true; panics with `what` and the logs on timeout,
    /// or as soon as the process exits with the condition still false.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let mut exited = None;
        let ok = poll_until(timeout, || {
            if cond() {
                return true;
            }
            if let Some(s) = self.try_status() {
                // One last look: the condition may have become true just before the exit.
                exited = Some(s);
                return true;
            }
            false
        });
        if let Some(s) = exited {
            if !cond() {
                panic!(
                    "the sidecar exited ({}) while waiting for: {what}\n{}",
                    describe_status(s),
                    self.logs()
                );
            }
            return;
        }
        if !ok {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                self.logs()
            );
        }
    }

    /// Like [`Running::wait_until`] but tolerates the process exiting (for
    /// conditions that are expected around an exit).
    pub fn wait_until_even_if_exited(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl FnMut() -> bool,
    ) {
        if !poll_until(timeout, cond) {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                self.logs()
            );
        }
    }

    /// Waits (up to [`DEADLINE`]) until `link` points at `.../<sha>`.
    pub fn wait_for_link_hash(&self, link: &Path, sha: &str) {
        self.wait_until(DEADLINE, &format!("{} -> {sha}", link.display()), || {
            link_target_hash(link).as_deref() == Some(sha)
        });
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.kill9();
        }
    }
}

/// "exit status 1" / "killed by signal 9".
pub fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{s}"),
    }
}

/// The basename of a symlink's target (the published hash), or `None` if
/// `link` is not a symlink.
pub fn link_target_hash(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Free-standing variant: polls until `link` points at `sha` (no process to report on).
pub fn wait_for_link_hash(link: &Path, sha: &str, timeout: Duration) -> bool {
    poll_until(timeout, || link_target_hash(link).as_deref() == Some(sha))
}
