//! A forge outage, run with each manifest's own git-sidecar args (only the
//! repository, paths and the HTTP address rewritten): the repository is
//! served by a real `git daemon` on 127.0.0.1 that goes away after the first
//! sync, and git-sidecar is restarted while it is gone (a node drain, an
//! OOM kill). The restarted process must keep running through the failing
//! polls and stay ready, serving the content published before, since that
//! content verifies and its last successful sync is recent; once the
//! recorded sync is older than the manifest's `--readiness-max-staleness`,
//! it is not ready.

use super::*;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::programs::{get, local_args, wait_for};
use crate::support::client::wait_for_http_address;
use crate::support::{
    link_target_hash, poll_until, GitDaemon, Running, Sidecar, Upstream, DEADLINE,
};

#[test]
fn a_forge_outage_neither_restarts_git_sidecar_nor_makes_it_unready() {
    let models: Vec<Model> = all_variants().iter().map(model_of).collect();
    let mut checked = 0;
    for m in models.iter().filter(|m| pending_flags(&m.name).is_none()) {
        for w in &m.objects.workloads {
            for c in w.pod.running_sidecars() {
                outage_like_the_manifest(m, w, c);
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} git-sidecar containers run");
}

fn outage_like_the_manifest(m: &Model, w: &Workload, c: &Container) {
    let at = format!("{}/{} container {}", m.name, w.what, c.name);
    let up = Upstream::new();
    let pod_fs = PodFs::new(&m.objects, &w.pod);
    let head = super::programs::first_commit(&up, c, &pod_fs);
    let forge = GitDaemon::start(up.base());
    let url = forge.url(up.name());
    let link = PathBuf::from(pod_fs.map(c, &c.link_path().expect("--link"), &[]));
    let start = || {
        let (args, env) = mapped_invocation(c, &pod_fs);
        let mut sidecar = Sidecar::new().args(local_args(args, &url));
        for (name, value) in &env {
            sidecar = sidecar.env(name, value);
        }
        let run = sidecar.spawn();
        let addr = wait_for_http_address(&run);
        (run, addr)
    };

    // The first sync, then the container dies while the forge goes down.
    let (first, addr) = start();
    wait_for(&addr, "/readyz", 200, None, || {
        format!("{at}\n{}", first.logs())
    });
    assert_eq!(
        link_target_hash(&link).as_deref(),
        Some(head.as_str()),
        "{at}"
    );
    first.kill9();
    drop(forge);

    // Restarted with the forge down: it polls, fails, and keeps serving.
    let (second, addr) = start();
    let context = || format!("{at}\n{}", second.logs());
    let mut status = serde_json::Value::Null;
    let failed_thrice = poll_until(DEADLINE, || {
        if second.try_status().is_some() {
            return true;
        }
        status = get(&addr, "/status").json();
        status["consecutive_failures"].as_u64() >= Some(3)
    });
    assert!(
        failed_thrice,
        "{at}: no 3 failed polls; last /status {status}\n{}",
        context()
    );
    assert!(
        second.try_status().is_none(),
        "{at}: git-sidecar exited on a failed poll while the forge was down \
         (a restarting container is not ready)\n{}",
        context()
    );
    let ready = get(&addr, "/readyz");
    assert_eq!(
        ready.status,
        200,
        "{at}: /readyz after a restart with the forge down, content a few seconds old: {ready}\n{}",
        context()
    );
    assert_eq!(
        link_target_hash(&link).as_deref(),
        Some(head.as_str()),
        "{at}"
    );
    let age = status["last_success_age_seconds"].as_u64();
    assert!(age.is_some_and(|a| a < 60), "{at}: /status age {status}");
    assert_eq!(
        status["published_hash"].as_str(),
        Some(head.as_str()),
        "{at}"
    );
    second.kill9();

    // The same content, but its recorded sync is older than the limit.
    age_the_recorded_sync(&pod_fs, c, &head, staleness_limit(c) + 60);
    let (third, addr) = start();
    let mut last = String::new();
    let too_old = poll_until(DEADLINE, || {
        let r = get(&addr, "/readyz");
        last = r.to_string();
        r.status == 503 && r.text().contains("ago (limit")
    });
    assert!(
        too_old,
        "{at}: /readyz with content older than --readiness-max-staleness: {last}\n{}",
        third.logs()
    );
    assert_running(&third, &at);
}

fn assert_running(run: &Running, at: &str) {
    assert!(run.try_status().is_none(), "{at}: exited\n{}", run.logs());
}

/// The manifest's `--readiness-max-staleness`, in seconds.
fn staleness_limit(c: &Container) -> u64 {
    let value = c
        .setting("readiness-max-staleness")
        .expect("the manifests set --readiness-max-staleness");
    humantime::parse_duration(&value)
        .unwrap_or_else(|e| panic!("--readiness-max-staleness={value}: {e}"))
        .as_secs()
}

/// Rewrites the root's record of the last successful sync (one line,
/// `<hash> <unix ms>`, in `<root>/.git/git-sidecar-last-sync`) to `secs` ago.
fn age_the_recorded_sync(pod_fs: &PodFs, c: &Container, head: &str, secs: u64) {
    let root = PathBuf::from(pod_fs.map(c, &c.setting("root").expect("--root"), &[]));
    let record = root.join(".git/git-sidecar-last-sync");
    let recorded = fs::read_to_string(&record).expect("a record of the last sync in .git");
    assert!(recorded.starts_with(head), "{recorded:?}");
    let then = SystemTime::now() - Duration::from_secs(secs);
    let millis = then
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    fs::write(&record, format!("{head} {millis}\n")).expect("rewriting the record");
}
