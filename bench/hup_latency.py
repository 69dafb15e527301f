#!/usr/bin/env python3
"""SIGHUP -> published for one-file commits, against a running git-sidecar.

    bench/hup_latency.py --pid PID --root ROOT --upstream BARE.git [--branch main] [--runs 6]

The sidecar must run with `--sync-on-signal SIGHUP --link site` on ROOT and
poll BARE.git (served by `git daemon`). Each run commits a change to one file
of the branch's tree straight into BARE.git (plumbing, no work tree),
signals PID and polls `ROOT/site` every 0.5 ms until it names the commit.
With `-v 1` the sidecar logs where each pass spent its time ("pass timings"
and "rewrote the retired worktree"). The first run after a start is a full
checkout (no retired worktree to rewrite yet).
"""

import argparse
import os
import signal
import subprocess
import tempfile
import time


def git(env, *args, stdin=None):
    return subprocess.run(["git", *args], env=env, input=stdin, capture_output=True, text=True,
                          check=True).stdout.strip()


def commit_one_file(env, branch, n):
    path = git(env, "ls-files").splitlines()[100]
    blob = git(env, "hash-object", "-w", "--stdin", stdin=f"change {n} {time.time_ns()}\n")
    git(env, "update-index", "--cacheinfo", f"100644,{blob},{path}")
    tree = git(env, "write-tree")
    commit = git(env, "commit-tree", tree, "-p", branch, "-m", f"one file {n}")
    git(env, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--branch", default="main")
    p.add_argument("--runs", type=int, default=6)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_DIR": args.upstream,
               "GIT_INDEX_FILE": os.path.join(tmp, "index"), "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
               "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
        git(env, "read-tree", args.branch)
        walls = []
        for n in range(args.runs):
            sha = commit_one_file(env, args.branch, n)
            t0 = time.perf_counter()
            os.kill(args.pid, signal.SIGHUP)
            while os.path.basename(os.readlink(os.path.join(args.root, "site"))) != sha:
                if time.perf_counter() - t0 > 120:
                    raise SystemExit(f"not published after 120 s: {sha}")
                time.sleep(0.0005)
            walls.append((time.perf_counter() - t0) * 1000)
            time.sleep(1.0)
    print("SIGHUP -> published (ms):", " ".join(f"{w:.0f}" for w in walls),
          f"| median of runs 2..: {sorted(walls[1:])[len(walls[1:]) // 2]:.0f}" if len(walls) > 1 else "")


if __name__ == "__main__":
    main()
