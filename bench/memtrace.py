#!/usr/bin/env python3
"""Runs a command and samples its memory split: RssAnon, RssFile, RssShmem
(and VmHWM) from /proc/PID/status every --interval seconds, plus the peak of
each. `ru_maxrss` (what `/usr/bin/time -v` prints) is the peak of their sum;
this says which part it was.

    bench/memtrace.py [--interval 0.02] [--cgroup NAME] -- git-sidecar --one-time ...

With --cgroup NAME (as root) the command runs in the cgroup NAME, which must
exist: v2 `mkdir /sys/fs/cgroup/NAME; echo 64M > /sys/fs/cgroup/NAME/memory.max`,
v1 `mkdir /sys/fs/cgroup/memory/NAME; echo 64M > .../memory.limit_in_bytes`
(then pass `--cgroup memory/NAME`).
Prints one summary line per sample change of more than 8 MiB and the peaks.
"""

import argparse
import os
import subprocess
import sys
import time

import procs

FIELDS = ("RssAnon", "RssFile", "RssShmem", "VmHWM")


def status(pid):
    """FIELDS in MiB (procs.status_split), or None once the process is gone."""
    s = procs.status_split(pid)
    return {k: s[k] // 1024 for k in FIELDS if k in s} or None


def join_cgroup(name):
    """Moves this process (and so the command it starts) into cgroup NAME."""
    for members in (f"/sys/fs/cgroup/{name}/cgroup.procs", f"/sys/fs/cgroup/memory/{name}/cgroup.procs",
                    f"/sys/fs/cgroup/unified/{name}/cgroup.procs"):
        if os.path.exists(members):
            with open(members, "w") as f:
                f.write(str(os.getpid()))
            return members
    sys.exit(f"memtrace: no cgroup {name!r} under /sys/fs/cgroup (create it first)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--cgroup")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if args.cgroup:
        join_cgroup(args.cgroup)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd)
    peaks = dict.fromkeys(FIELDS, 0)
    last = 0
    while proc.poll() is None:
        s = status(proc.pid)
        if s:
            for k, v in s.items():
                peaks[k] = max(peaks[k], v)
            total = s.get("RssAnon", 0) + s.get("RssFile", 0) + s.get("RssShmem", 0)
            if abs(total - last) > 8:
                last = total
                print(f"{time.monotonic() - t0:7.2f}s " + " ".join(f"{k}={s.get(k, 0)}M" for k in FIELDS),
                      file=sys.stderr)
        time.sleep(args.interval)
    print("peaks (MiB): " + " ".join(f"{k}={v}" for k, v in peaks.items())
          + f" exit={proc.returncode} wall={time.monotonic() - t0:.2f}s", file=sys.stderr)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
