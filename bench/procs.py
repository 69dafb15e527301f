"""Child processes of the benchmark: starting, measuring and always reaping them.

Owns the registry of every process the harness started (each in its own
session, so a whole process group can be killed), the clean-up on exit and on
SIGINT/SIGTERM, one-shot measured runs (`os.wait4`: wall, user+sys CPU, peak
RSS; a sampled anonymous/file split of the peak) and readings of a running process from /proc (CPU, RSS, fds, threads, I/O).
"""

import atexit
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")

_started = []


SPLIT_KEYS = ("RssAnon", "RssFile", "RssShmem")


@dataclass
class Sample:
    """One measured run: seconds of wall and CPU time, peak RSS in KiB, and
    `split`: the sampled peaks (KiB) of RssAnon, RssFile and RssShmem of the
    process whose sampled RSS was largest (see `Sampler`), or None."""

    wall: float
    cpu: float
    rss_kib: int
    split: dict = None

    @staticmethod
    def combine(samples):
        """Processes run one after the other: times add up, RSS is the max
        (and the split is that of the largest process whose split was read;
        a short-lived process may end before the first reading)."""
        largest = max(samples, key=lambda s: s.rss_kib)
        split = max((s for s in samples if s.split), key=lambda s: s.rss_kib, default=largest).split
        return Sample(
            wall=sum(s.wall for s in samples),
            cpu=sum(s.cpu for s in samples),
            rss_kib=largest.rss_kib,
            split=split,
        )

    def anon_kib(self):
        """The sampled anonymous peak, or None if nothing was read."""
        return None if not self.split else self.split["RssAnon"]

    def file_kib(self):
        """The sampled file-backed peak: RssFile plus RssShmem (a file on
        tmpfs, such as a pack under a tmpfs root, is counted as shmem by the
        kernel); None if nothing was read."""
        return None if not self.split else self.split["RssFile"] + self.split["RssShmem"]


class CommandFailed(RuntimeError):
    pass


def start(cmd, **kwargs):
    """Starts a long-running child in its own session and registers it for clean-up."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    _started.append(proc)
    return proc


def stop(proc, grace=5.0):
    """SIGTERM to the child's process group, SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    else:
        # The leader is gone; its group may still hold children (git daemon's).
        _signal_group(proc, signal.SIGKILL)
    if proc in _started:
        _started.remove(proc)


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all():
    for proc in list(reversed(_started)):
        stop(proc, grace=2.0)


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup():
    """Kills every started process at exit, also after Ctrl-C or SIGTERM."""
    atexit.register(stop_all)
    # Set explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)


_launcher = None


def build_rust(src, out_dir):
    """Compiles the one-file Rust program `src` (no dependencies) into `out_dir`
    unless an up-to-date build exists; returns the executable's path."""
    exe = out_dir / src.stem
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["rustc", "-O", "--edition", "2021", "-o", str(exe), str(src)], check=True)
    return exe


def build_launcher(src, out_dir):
    """Compiles bench/rusage.rs (see there for why)."""
    global _launcher
    _launcher = build_rust(src, out_dir)


def launcher():
    """The built launcher (`build_launcher` first)."""
    return _launcher


def measure(cmd, cwd=None, env=None, split=True):
    """Runs `cmd` to completion; returns its Sample (children included) and stdout.

    The CPU times and peak RSS are those wait4 gives the launcher for `cmd`:
    they cover every descendant `cmd` waited for (git fetch's index-pack, for
    instance), and ru_maxrss is the largest of them. The anonymous/file split
    is sampled (`Sampler` on every process below the launcher) unless
    `split` is false: rows that only time a run leave the sampler's
    readings (a /proc walk every 5 ms, on cores the run shares) out. Wall
    time is measured here. Output goes to unnamed temporary files so no
    pipe can stall it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as usage:
        t0 = time.perf_counter()
        proc = start([str(_launcher), usage.name, *map(str, cmd)], cwd=cwd, env=env, stdout=out, stderr=err)
        with Sampler(proc.pid, below=True, active=split) as sampler:
            _, status, _ = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        split = sampler.peaks
        proc.returncode = os.waitstatus_to_exitcode(status)
        _started.remove(proc)
        out.seek(0)
        err.seek(0)
        stdout, stderr, report = out.read(), err.read(), usage.read().split()
    if proc.returncode != 0 or len(report) != 3:
        text = stderr.decode(errors="replace").strip()[-2000:]
        raise CommandFailed(f"{' '.join(map(str, cmd))} exited {proc.returncode}: {text}")
    user_us, sys_us, rss_kib = map(int, report)
    sample = Sample(wall=wall, cpu=(user_us + sys_us) / 1e6, rss_kib=rss_kib, split=split)
    return sample, stdout.decode(errors="replace").strip()


def status_split(pid):
    """RssAnon, RssFile, RssShmem, VmRSS and VmHWM (KiB) from /proc/PID/status;
    empty once the process is gone (or while it is a zombie: no memory lines)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in (*SPLIT_KEYS, "VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out if all(k in out for k in SPLIT_KEYS) else {}


def status_split_of_live(pid):
    """`status_split` of a process that must be alive: an error naming it otherwise."""
    status = status_split(pid)
    if "VmRSS" not in status:
        raise RuntimeError(f"process {pid} is gone: no memory figures in /proc/{pid}/status")
    return status


def children(pid):
    """The processes `pid` started (the children of each of its threads); none if it is gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            continue
    return kids


def _descendants(pid):
    """Every process below `pid` (the children of each of its threads, recursively)."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


class Sampler:
    """Peaks of RssAnon, RssFile and RssShmem, read from /proc/PID/status
    every 5 ms, of `pid` itself or (`below`) of each process below it. The
    kernel keeps no peak per kind: a spike between two readings is missed, so
    these are lower bounds (VmHWM and wait4's ru_maxrss are exact totals).
    `stop` returns the peaks of the process whose largest sampled total was
    the largest (the one ru_maxrss most likely names), or None if none was
    read. A file mapped from tmpfs (a pack under a tmpfs root) counts as
    RssShmem, not RssFile."""

    def __init__(self, pid, below=False, active=True):
        self._pid, self._below = pid, below
        self._peaks = {}  # pid -> {key: KiB, "total": KiB}
        self.peaks = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if active:
            self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _run(self):
        while not self._stop.is_set():
            try:
                self.read_once()
            except Exception as e:  # noqa: BLE001 - a failed reading must not end the sampling silently
                print(f"memory sampler: {e!r}", flush=True)
            time.sleep(0.005)

    def read_once(self):
        for pid in _descendants(self._pid) if self._below else [self._pid]:
            now = status_split(pid)
            if not now:
                continue
            peak = self._peaks.setdefault(pid, dict.fromkeys((*SPLIT_KEYS, "total"), 0))
            for key in SPLIT_KEYS:
                peak[key] = max(peak[key], now.get(key, 0))
            peak["total"] = max(peak["total"], sum(now.get(k, 0) for k in SPLIT_KEYS))

    def stop(self):
        """Ends the sampling (again: a no-op) and returns `peaks`."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._peaks:
            largest = max(self._peaks.values(), key=lambda p: p["total"])
            self.peaks = {k: largest[k] for k in SPLIT_KEYS}
        return self.peaks


def output(cmd, cwd=None, env=None, input_bytes=None):
    """Runs a helper command (not measured) and returns its stdout as text."""
    res = subprocess.run(cmd, cwd=cwd, env=env, input=input_bytes, capture_output=True)
    if res.returncode != 0:
        text = res.stderr.decode(errors="replace").strip()[-2000:]
        raise CommandFailed(f"{' '.join(map(str, cmd))} exited {res.returncode}: {text}")
    return res.stdout.decode().strip()


def cpu_seconds(pid, reaped=False):
    """utime + stime of a live process (all its threads, live and exited),
    and with `reaped` also those of the children it has waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14 to 17.
    used = fields[11:15] if reaped else fields[11:13]
    return sum(map(int, used)) / CLK_TCK


def status_kib(pid, key):
    """A `kB` figure from /proc/PID/status, e.g. VmRSS or VmHWM."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def io_write_bytes(pid):
    """Bytes this process caused to be sent to a block device (/proc/PID/io)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise KeyError("write_bytes")


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
