//! `--reload-process`: the sidecar signals a real nginx master (and other
//! processes found by name) after each publish.

use super::*;

/// A child process killed (with its process group) when dropped.
struct Proc {
    child: Child,
    group: bool,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let pid = Pid::from_raw(self.pid());
            if self.group {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            let _ = kill(pid, Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Spawns `cmd`, retrying while the program is still being written by
/// another thread's fork (ETXTBSY, a race of freshly written executables).
fn spawn_retrying(cmd: &mut Command, group: bool) -> Proc {
    // SAFETY: prctl and sigaction are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)?;
            // A test run started under `nohup` ignores SIGHUP, and exec
            // keeps that: the targets must start with the default.
            nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigDfl)
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    if group {
        cmd.process_group(0);
    }
    for _ in 0..100 {
        match cmd.spawn() {
            Ok(child) => return Proc { child, group },
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("cannot start {cmd:?}: {e}"),
        }
    }
    panic!("cannot start {cmd:?}: text file busy");
}

/// nginx in the foreground with the test config in `dir`, serving `root`
/// on 127.0.0.1:`port`.
fn start_nginx(dir: &Path, root: &Path, port: u16) -> Proc {
    spawn_retrying(&mut nginx_command(dir, root, port), true)
}

fn nginx_context(dir: &Path, master: i32) -> String {
    format!(
        "--- nginx master {master} (alive: {}), children {:?} ---\n--- error.log ---\n{}",
        alive(master),
        children_of(master),
        fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    )
}

/// nginx's "signal 1 (SIGHUP) received from <pid>, reconfiguring" lines:
/// the sender of each SIGHUP.
fn hup_senders(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("error.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("signal 1 (SIGHUP) received from ")?.1;
            let (pid, tail) = rest.split_once(',')?;
            assert!(
                tail.contains("reconfiguring"),
                "unexpected nginx log line {l:?}"
            );
            pid.trim().parse().ok()
        })
        .collect()
}

#[test]
fn reload_signal_reaches_a_real_nginx_master() {
    let up = Upstream::new();
    let a = up.commit_file("index.html", "a\n", "a");
    let s = Scratch::new();
    let ngx_dir = tempdir("nginx");
    let mut nginx = start_nginx(ngx_dir.path(), &s.link(), free_port());
    let master = nginx.pid();
    let ctx = |run: &Running| format!("{}\n{}", nginx_context(ngx_dir.path(), master), run.logs());
    wait_until(
        DEADLINE,
        "nginx's worker process",
        || !children_of(master).is_empty(),
        || nginx_context(ngx_dir.path(), master),
    );
    let gen0 = children_of(master);

    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .args(["--reload-process", "nginx", "--reload-signal", "HUP"])
        .spawn();
    // SIGHUPs this sidecar sent (any other nginx master on the machine, e.g.
    // of a concurrent run of this test, gets them too, and sends its own).
    let ours = || {
        hup_senders(ngx_dir.path())
            .iter()
            .filter(|p| **p == run.pid().as_raw())
            .count()
    };
    run.wait_for_link_hash(&s.link(), &a);
    // Publishing A reloads nginx: a new generation of workers.
    run.wait_until(
        DEADLINE,
        "nginx reconfigured by the sidecar after A",
        || ours() >= 1,
    );
    let mut gen1 = Vec::new();
    run.wait_until(DEADLINE, "a new generation of nginx workers", || {
        gen1 = children_of(master);
        !gen1.is_empty() && gen1.iter().all(|p| !gen0.contains(p))
    });
    let before = ours();

    let b = up.commit_file("index.html", "b\n", "b");
    run.wait_for_link_hash(&s.link(), &b);
    run.wait_until(
        DEADLINE,
        "nginx reconfigured by the sidecar after B",
        || ours() > before,
    );
    let mut gen2 = Vec::new();
    run.wait_until(DEADLINE, "another generation of nginx workers", || {
        gen2 = children_of(master);
        !gen2.is_empty() && gen2.iter().all(|p| !gen1.contains(p))
    });
    assert!(
        nginx.exited().is_none() && alive(master),
        "the nginx master must survive the reloads\n{}",
        ctx(&run)
    );
    let pid_file = fs::read_to_string(ngx_dir.path().join("nginx.pid")).unwrap_or_default();
    assert_eq!(pid_file.trim(), master.to_string(), "{}", ctx(&run));
    // One reload per publish: none twice, no storm from unchanged passes
    // (sync::tests::hooks_hear_of_publishes_and_of_the_first_pass_only).
    assert_eq!(
        (before, ours()),
        (1, 2),
        "SIGHUPs from the sidecar (pid {}) after A and after B; all senders: {:?}\n{}",
        run.pid(),
        hup_senders(ngx_dir.path()),
        ctx(&run)
    );
    run.assert_running();
}

/// A copy of /bin/sleep named `gsx<random>` (a unique /proc/PID/comm).
fn sleep_copy(dir: &Path) -> (PathBuf, String) {
    let mut rng = fastrand::Rng::new();
    let name: String = format!("gsx{}", (0..8).map(|_| rng.lowercase()).collect::<String>());
    let path = dir.join(&name);
    fs::copy("/bin/sleep", &path).expect("copying /bin/sleep");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    (path, name)
}

/// True when the SigIgn mask in /proc/PID/status has SIGHUP.
fn ignores_hup(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let mask = s
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&mask, 16).ok()
        })
        .is_some_and(|m| m & 1 != 0)
}

#[test]
fn reload_signal_ignored_by_its_target_or_no_target_keeps_syncing() {
    let up = Upstream::new();
    let a = up.commit_file("f", "1", "a");
    let s = Scratch::new();
    let bin_dir = tempdir("reload");
    let (prog, name) = sleep_copy(bin_dir.path());
    let comm = |pid: i32| fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();

    // Two processes with the name: one ignores SIGHUP (exec keeps the
    // ignored disposition), the other dies of it, proving it was sent.
    let mut ignoring = spawn_retrying(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("trap '' HUP; exec '{}' 30", prog.display()))
            .stdin(Stdio::null()),
        false,
    );
    let mut dying = spawn_retrying(Command::new(&prog).arg("30").stdin(Stdio::null()), false);
    wait_until(
        DEADLINE,
        "both processes run under their name",
        || comm(ignoring.pid()).trim() == name && comm(dying.pid()).trim() == name,
        || format!("comm: {:?} {:?}", comm(ignoring.pid()), comm(dying.pid())),
    );
    assert!(ignores_hup(ignoring.pid()), "setup: SIGHUP not ignored");

    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms"])
        .args(["--reload-process", &name, "--reload-signal", "SIGHUP"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &a);
    let mut status = None;
    run.wait_until(
        DEADLINE,
        "the process that does not ignore SIGHUP died of it",
        || {
            status = dying.exited();
            status.is_some()
        },
    );
    assert_eq!(
        status.and_then(|s| s.signal()),
        Some(Signal::SIGHUP as i32),
        "{:?}\n{}",
        status,
        run.logs()
    );
    let b = up.commit_file("f", "2", "b");
    run.wait_for_link_hash(&s.link(), &b);
    std::thread::sleep(secs(0.5));
    assert!(
        ignoring.exited().is_none(),
        "the process ignoring SIGHUP died\n{}",
        run.logs()
    );
    run.assert_running();

    // A name nothing has: an error is logged and syncing goes on.
    let s = Scratch::new();
    // At most 15 bytes, like any /proc/PID/comm (longer names are refused).
    let missing = format!("gsxno{}", name.trim_start_matches("gsx"));
    let run = s
        .sidecar(&up.file_url())
        .args(["--period", "100ms", "--reload-process", &missing])
        .spawn();
    run.wait_for_link_hash(&s.link(), &b);
    run.wait_until(DEADLINE, "\"no process named\" in the logs", || {
        run.stderr().contains("no process named")
    });
    let c = up.commit_file("f", "3", "c");
    run.wait_for_link_hash(&s.link(), &c);
    run.assert_running();
}

/// Hooks inherit our environment, minus our own secrets.
#[test]
fn hooks_do_not_see_our_secrets() {
    let up = Upstream::new();
    let sha = up.commit_file("f", "1", "first");
    let s = Scratch::new();
    let (env_file, env_path) = scratch_path(&s, "env.txt");
    let hook = script(&s, "env.sh", &format!("env > '{env_path}'"));
    let out = s
        .sidecar(&up.file_url())
        .args(["--one-time", "--http-bind", "127.0.0.1:0"])
        .arg("--exechook-command")
        .arg(&hook)
        .env("GITSYNC_INCOMING_WEBHOOK_SECRET", "hunter2-webhook")
        .env("GITSYNC_SYNC_TRIGGER_TOKEN", "hunter2-token")
        .env("SOME_OTHER_VAR", "kept")
        .run(Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe_output(&out));
    let env = fs::read_to_string(&env_file).expect("the hook ran");
    assert!(env.contains(&format!("GITSYNC_HASH={sha}")), "{env}");
    assert!(
        env.contains("SOME_OTHER_VAR=kept"),
        "the rest is inherited: {env}"
    );
    assert!(
        !env.contains("hunter2"),
        "secrets leaked into the hook: {env}"
    );
}
