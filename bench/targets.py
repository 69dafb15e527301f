"""Issue 16's targets, each measured side by side with the git CLI baseline
and, where it applies, the git-sync v4.7.1 emulation (`scenarios.GitWay`).

Owns the realistic documentation corpus's scenarios (`repogen.DocsGenerated`,
tens of thousands of markdown pages with a long delta-packed history), the
one-blob repository, the memory-limited cgroup, and the rows of the targets table
(`res.targets`). Figures measured by someone else on git-sync itself are
quoted as such, never mixed with ours.
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

import procs
import vm
from procs import Sample
from repogen import FastImport, git_env, output
from scenarios import GitWay, clean
from sidecar import Running, link_target, one_time_cmd, sidecar_env, wait_link

BLOB_MIB = 200
CGROUP_LIMIT = 64 * 2**20
ISSUE = "issue 16, measured by its reporter on git-sync v4.7.1 itself"


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def med(values):
    return statistics.median(values) if values else None


class Row:
    def __init__(self, target, goal, sidecar, git="–", emulation="–", verdict=""):
        self.cells = [target, goal, sidecar, git, emulation, verdict]


def verdict(ok, how=""):
    return ("**met**" if ok else "**not met**") + (f": {how}" if how else "")


# ---- memory figures ----------------------------------------------------------------------------

def peak_text(samples):
    """`<median peak RSS> (anon a, file f, shmem s)` of `samples` (procs.Sample):
    the medians of the exact peaks and of the sampled peaks of each kind
    (file-backed on disk, file-backed on tmpfs), over the runs whose split
    was read (all of them, or the count is said)."""
    total = mib(med([x.rss_kib for x in samples]))
    read = [x for x in samples if x.split]
    if not read:
        return f"{total} (split not read)"
    kinds = (("anon", "RssAnon"), ("file", "RssFile"), ("shmem", "RssShmem"))
    split = ", ".join(f"{name} {mib(med([x.split[key] for x in read]))}" for name, key in kinds)
    if len(read) < len(samples):
        return f"{total} ({split}: {len(read)} of {len(samples)} runs)"
    return f"{total} ({split})"


# ---- the memory-limited cgroup ----------------------------------------------------------------

class MemoryCgroup:
    """A child cgroup of this process's own, limited to `limit` bytes of
    memory: cgroup v2 (`memory.max`, `memory.peak`, `memory.events`) when the
    memory controller is on the unified hierarchy, else cgroup v1
    (`memory.limit_in_bytes`, `memory.max_usage_in_bytes`, `memory.oom_control`).
    Removed again by `close`. Needs root."""

    def __init__(self, name, limit):
        self.version, self.path = self._create(name)
        self.limit = limit
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))

    @staticmethod
    def _own(controller_line_match):
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller_line_match(controllers):
                    return path
        return None

    def _create(self, name):
        for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
            controllers = base / "cgroup.controllers"
            if controllers.exists() and "memory" in controllers.read_text().split():
                own = self._own(lambda c: c == "")
                parent = base / own.lstrip("/")
                if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                    raise RuntimeError(f"cgroup v2: the memory controller is not enabled for children of {parent}")
                path = parent / name
                path.mkdir(exist_ok=True)
                return 2, path
        v1 = Path("/sys/fs/cgroup/memory")
        if v1.is_dir():
            own = self._own(lambda c: "memory" in c.split(","))
            path = v1 / (own or "/").lstrip("/") / name
            path.mkdir(exist_ok=True)
            return 1, path
        raise RuntimeError("no cgroup memory controller (v2 or v1) to limit a run with; run as root on Linux")

    def wrap(self, cmd):
        """`cmd` run inside the cgroup (the shell moves itself in, then execs)."""
        return ["/bin/sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh", *map(str, cmd)]

    def reset(self):
        if self.version == 1:
            (self.path / "memory.max_usage_in_bytes").write_text("0")
            (self.path / "memory.failcnt").write_text("0")
        elif (self.path / "memory.peak").exists():
            try:
                (self.path / "memory.peak").write_text("0")  # resettable since Linux 6.12
            except OSError:
                pass
        self._ooms0 = self.ooms()

    def peak(self):
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        p = self.path / name
        return int(p.read_text()) if p.exists() else None

    def ooms(self):
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (self.path / name).read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def new_ooms(self):
        return self.ooms() - getattr(self, "_ooms0", 0)

    def close(self):
        try:
            self.path.rmdir()
        except OSError:
            pass


# ---- corpora ------------------------------------------------------------------------------------

def make_blob_repo(path, home, size, seed):
    """A bare repository whose one commit holds one incompressible blob of `size` bytes."""
    import random

    env = git_env(home)
    clean(path)
    output(["git", "init", "-q", "--bare", str(path)], env=env)
    rng = random.Random(f"{seed}:blob")
    fi = FastImport(path, env)
    fi.commit(1700000000, "One large blob", iter([("big.bin", rng.randbytes(size)), ("README.md", b"big\n")]))
    fi.close()
    return output(["git", "--git-dir", str(path), "rev-parse", "refs/heads/main"], env=env)


# ---- the scenarios -----------------------------------------------------------------------------

class Targets:
    def __init__(self, ctx, res, upstream, name, disk, tmpfs, blob_name, blob_tip):
        self.ctx, self.res, self.up, self.name = ctx, res, upstream, name
        self.disk, self.tmpfs = disk, tmpfs
        self.blob_name, self.blob_tip = blob_name, blob_tip
        self.url = ctx.daemon.url(name)
        self.rows = res.targets if res else []
        self.only = []  # names of the steps to run (all when empty)
        self.blob_mib = BLOB_MIB  # the size make_blob_repo was given

    def log(self, msg):
        self.ctx.log(f"targets: {msg}")

    def one_time(self, root, url=None, extra=()):
        return [*one_time_cmd(self.ctx.binary, url or self.url, root), *extra]

    def run_all(self):
        steps = [self.initial, self.blob, self.cgroup, self.cgroup_v2, self.idle, self.signal,
                 self.one_time_publish, self.compaction]
        if self.only:
            steps = [s for s in steps if s.__name__ in self.only]
        for step in steps:
            t0 = time.monotonic()
            try:
                step()
            except Exception as e:  # noqa: BLE001 - a row says it failed; the others still run
                import traceback

                traceback.print_exc()
                self.rows.append(Row(step.__name__, "", f"failed: {e}"))
            self.log(f"{step.__name__}: {time.monotonic() - t0:.0f} s")

    # -- initial sync: peak RSS and CPU --
    def initial(self):
        self.log("initial sync (peak RSS, CPU) ...")
        side, clone, emu = [], [], []
        for _ in range(self.ctx.runs):
            root = self.tmpfs / "t-init-sidecar"
            clean(root)
            s, _ = procs.measure(self.one_time(root), env=sidecar_env())
            if link_target(root) != self.up.tip:
                raise RuntimeError("initial sync did not publish the tip")
            side.append(s)
            clean(root)
            root = self.tmpfs / "t-init-clone"
            clean(root)
            clone.append(procs.measure(["git", "clone", "-q", "--depth", "1", self.url, str(root)],
                                       env=self.ctx.git_env)[0])
            clean(root)
            way = GitWay(self.tmpfs / "t-init-emu", self.url, self.ctx.git_env)
            init = way.init()
            to_publish, _, _, _ = way.sync()
            emu.append(Sample.combine([init, to_publish]))
            clean(self.tmpfs / "t-init-emu")
        s_rss, c_rss = med([x.rss_kib for x in side]), med([x.rss_kib for x in clone])
        self.rows.append(Row(
            "Peak RSS, initial sync (depth 1, tmpfs; sampled split, shmem: packs mapped from tmpfs)",
            "≤ `git clone --depth 1`", peak_text(side), f"clone --depth 1: {peak_text(clone)}",
            f"{peak_text(emu)}, the largest git process",
            verdict(s_rss <= c_rss, "" if s_rss <= c_rss else f"{(s_rss / c_rss - 1) * 100:.0f}% over")))
        s_cpu, s_wall = med([x.cpu for x in side]), med([x.wall for x in side])
        e_cpu, e_wall = med([x.cpu for x in emu]), med([x.wall for x in emu])
        c_cpu, c_wall = med([x.cpu for x in clone]), med([x.wall for x in clone])
        ok = s_cpu <= 0.7 * e_cpu and s_wall <= 0.95 * e_wall
        self.rows.append(Row(
            "Initial sync: client CPU / wall (tmpfs)", "CPU ≤ 0.7×, wall ≤ 0.95× the git CLI doing git-sync's job",
            f"{s_cpu:.2f} s / {s_wall:.2f} s", f"clone --depth 1 alone: {c_cpu:.2f} s / {c_wall:.2f} s",
            f"{e_cpu:.2f} s / {e_wall:.2f} s",
            verdict(ok, f"CPU {s_cpu / e_cpu:.2f}×, wall {s_wall / e_wall:.2f}× of the emulation")))

    # -- one large blob (200 MiB unless --blob-mib says) --
    def blob(self):
        self.log(f"one {self.blob_mib} MiB blob ...")
        side, clone = [], []
        url = self.ctx.daemon.url(self.blob_name)
        for _ in range(self.ctx.runs):
            root = self.disk / "t-blob-sidecar"
            clean(root)
            side.append(procs.measure(self.one_time(root, url), env=sidecar_env())[0])
            if link_target(root) != self.blob_tip:
                raise RuntimeError("the blob repository was not published")
            clean(root)
            root = self.disk / "t-blob-clone"
            clean(root)
            clone.append(procs.measure(["git", "clone", "-q", "--depth", "1", url, str(root)], env=self.ctx.git_env)[0])
            clean(root)
        s = med([x.rss_kib for x in side])
        c = med([x.rss_kib for x in clone])
        self.rows.append(Row(
            f"Peak RSS, one {self.blob_mib} MiB blob (disk)", "≤ 1.1× git's peak",
            peak_text(side), f"clone --depth 1: {peak_text(clone)}", "–",
            verdict(s <= 1.1 * c, f"{s / c:.2f}× git's")))

    # -- the 64 MiB cgroup --
    def cgroup(self):
        self.log("64 MiB cgroup ...")
        group = MemoryCgroup(f"git-sidecar-bench-{os.getpid()}", CGROUP_LIMIT)
        try:
            results = {}
            for who, cmd_of in (("sidecar", lambda r: self.one_time(r)),
                                ("clone", lambda r: ["git", "clone", "-q", "--depth", "1", self.url, str(r)])):
                root = self.disk / f"t-cg-{who}"
                clean(root)
                group.reset()
                env = sidecar_env() if who == "sidecar" else self.ctx.git_env
                sample = None
                try:
                    sample, _ = procs.measure(group.wrap(cmd_of(root)), env=env)
                    ok = who != "sidecar" or link_target(root) == self.up.tip
                    err = ""
                except procs.CommandFailed as e:
                    ok, err = False, str(e)[-200:]
                results[who] = (ok, group.peak(), group.new_ooms(), err, sample)
                clean(root)
        finally:
            group.close()

        def cell(ok, peak, ooms, err, sample):
            peak_s = f"cgroup peak {peak / 2**20:.1f} MiB" if peak is not None else "cgroup peak not reported"
            process = f"; the process: {peak_text([sample])}" if sample else ""
            return f"{'pass' if ok else 'FAIL'}, {peak_s}, OOM kills {ooms}{process}" + (f" ({err})" if err else "")

        ok = results["sidecar"][0]
        self.rows.append(Row(
            f"Sync + publish in a {CGROUP_LIMIT // 2**20} MiB memory cgroup (cgroup v{group.version}, disk; "
            "page cache counts)", "passes", cell(*results["sidecar"]), f"clone --depth 1: {cell(*results['clone'])}",
            "–", verdict(ok)))

    # -- the 64 MiB cgroup and a CPU quota on cgroup v2, in a VM (whatever the host's cgroups) --
    def cgroup_v2(self):
        missing = vm.missing_tools()
        if missing:
            raise RuntimeError("the cgroup v2 VM needs: " + "; ".join(missing))
        self.log("64 MiB cgroup, cgroup v2, in a VM ...")
        _, version = vm.kernel()
        work = self.disk / "t-cg2-vm"
        got = vm.CgroupV2Vm(work, self.ctx.binary, procs.launcher(), self.up.generated.git_dir, CGROUP_LIMIT,
                            self.log).run()
        shutil.copy2(work / "console.log", self.ctx.log_dir / "cgroup-v2-vm-console.log")
        clean(work)
        runs = got["runs"]
        controllers = got["controllers"].split()
        where = f"see {self.ctx.log_dir}/cgroup-v2-vm-console.log"
        if not got["done"] or got["errors"] or set(runs) != {"sync", "publish", "clone", "quota"}:
            raise RuntimeError(f"the VM did not finish its runs: {got['errors'] or sorted(runs)}; {where}")
        if "memory" not in controllers or "cpu" not in controllers:
            raise RuntimeError(f"cgroup v2 in the VM did not enable memory and cpu: {controllers}; {where}")
        for name, r in runs.items():
            if r.get("limit") != str(CGROUP_LIMIT) or not r.get("peak", "").isdigit():
                raise RuntimeError(f"the {name} run's cgroup was not limited as asked: {r}; {where}")
        if runs["quota"].get("cpumax") != "100000/100000":
            raise RuntimeError(f"the quota run's cpu.max was not set: {runs['quota']}; {where}")
        for line in got["logs"]:
            self.log(f"VM: {line[:300]}")
        tips = {"sync": got["parent"], "publish": got["tip"], "clone": None, "quota": got["tip"]}

        def passed(name):
            r = runs[name]
            return r["rc"] == "0" and r.get("oom_kill") == "0" and tips[name] in (None, r["link"])

        def cell(name):
            r = runs[name]
            rss = f"{int(r['rss_kib']) / 1024:.1f} MiB" if r["rss_kib"].isdigit() else "not reported"
            kinds = (("anon", "anon_kib"), ("file", "file_kib"), ("shmem", "shmem_kib"))
            split = ", ".join(f"{kind} {mib(int(r[key]))}" for kind, key in kinds if r.get(key, "").isdigit())
            return (f"{'pass' if passed(name) else 'FAIL'} (exit {r['rc']}), cgroup peak "
                    f"{int(r['peak']) / 2**20:.1f} MiB, limit reached {r.get('max', '?')} times, OOM kills "
                    f"{r.get('oom_kill', '?')}; the process: {rss} ({split or 'split not read'})")

        where = (f"in a QEMU VM (TCG, 2 vCPUs) booting Debian's kernel {version}, ext4 disk; "
                 f"cgroup2 `memory.max`, page cache counts")
        self.rows.append(Row(
            f"Sync + publish in a {CGROUP_LIMIT // 2**20} MiB memory cgroup, **cgroup v2** ({where})", "passes",
            f"sync: {cell('sync')}; publish of the next commit: {cell('publish')}",
            f"clone --depth 1: {cell('clone')}", "–",
            verdict(passed("sync") and passed("publish"))))
        free, quota = runs["sync"]["threads"], runs["quota"]["threads"]
        ok = free == "2" and quota == "1" and passed("quota")
        self.rows.append(Row(
            "Threads for pack indexing and checkout under a CPU quota (cgroup v2 `cpu.max`, the same VM, 2 vCPUs)",
            "follow the quota, not the core count",
            f"no quota: {free} threads; `cpu.max` of 1 CPU: {quota} thread(s), {cell('quota')}", "–", "–",
            verdict(ok)))

    # -- idle RSS --
    def idle(self):
        self.log("idle RSS ...")
        root = self.tmpfs / "t-idle"
        clean(root)
        sc = Running(self.ctx.binary, self.url, root, "100ms", self.ctx.log_dir / "t-idle.log")
        try:
            sc.wait_published()
            time.sleep(max(3.0, self.ctx.idle_seconds))
            s = procs.status_split_of_live(sc.pid)
            threads = procs.threads(sc.pid)
        finally:
            sc.close()
            clean(root)
        total = s.get("VmRSS", 0)
        self.rows.append(Row(
            f"Idle RSS after the first sync ({self.up.file_count()} files, tmpfs)", "≤ 8 MiB",
            f"{mib(total)} (anon {mib(s.get('RssAnon', 0))}, file {mib(s.get('RssFile', 0))}, "
            f"shmem {mib(s.get('RssShmem', 0))}; {threads} threads)",
            "–", f"no resident process; git-sync itself: 13.8 MiB ({ISSUE})",
            verdict(total <= 8 * 1024, "" if total <= 8 * 1024 else f"{(total - 8 * 1024) / 1024:.1f} MiB over")))

    # -- SIGHUP → published --
    def signal(self):
        self.log("SIGHUP → published ...")
        root = self.tmpfs / "t-hup"
        clean(root)
        sc = Running(self.ctx.binary, self.url, root, "1h", self.ctx.log_dir / "t-hup.log",
                     extra_args=("--sync-on-signal", "SIGHUP"))
        way = GitWay(self.tmpfs / "t-hup-emu", self.url, self.ctx.git_env)
        walls, emu = [], []
        try:
            sc.wait_published()
            way.init()
            way.sync()
            for _ in range(max(3, self.ctx.runs)):
                sha = self.up.commit_changes(1, "sighup")
                before = sc.syncs()
                t0 = time.perf_counter()
                os.kill(sc.pid, signal.SIGHUP)
                wait_link(root, sha, 300)
                walls.append(time.perf_counter() - t0)
                sc.wait_syncs(before + 1, 300)
                to_publish, _, _, got = way.sync()
                if got != sha:
                    raise RuntimeError(f"emulation fetched {got}, expected {sha}")
                emu.append(to_publish.wall)
        finally:
            sc.close()
            clean(root)
            clean(self.tmpfs / "t-hup-emu")
        w = med(walls) * 1000
        self.rows.append(Row(
            f"SIGHUP → published, 1 file changed ({self.up.file_count()} files, git://, tmpfs)", "≤ 80 ms",
            f"{w:.0f} ms ({min(walls) * 1000:.0f}–{max(walls) * 1000:.0f})", "–",
            f"{med(emu) * 1000:.0f} ms (one pass to the link swap); git-sync itself: 1.16 s ({ISSUE})",
            verdict(w <= 80, "" if w <= 80 else f"{w - 80:.0f} ms over")))

    # -- --one-time publish of a 1-file change --
    def one_time_publish(self):
        self.log("--one-time publish of a 1-file change on an existing root ...")
        root = self.tmpfs / "t-ot"
        clean(root)
        procs.measure(self.one_time(root), env=sidecar_env())
        # Timing only: no memory sampler beside any of the runs compared.
        way = GitWay(self.tmpfs / "t-ot-emu", self.url, self.ctx.git_env, split=False)
        way.init()
        way.sync()
        clone = self.tmpfs / "t-ot-git"
        clean(clone)
        procs.measure(["git", "clone", "-q", "--depth", "1", self.url, str(clone)], env=self.ctx.git_env)
        reuse, full, emu, git = [], [], [], []
        try:
            # A first change leaves a parked spare, as every later cron run finds.
            sha = self.up.commit_changes(1, "one-time")
            procs.measure(self.one_time(root), env=sidecar_env())
            for _ in range(self.ctx.runs):
                for kind in ("reuse", "full"):
                    sha = self.up.commit_changes(1, "one-time")
                    if kind == "full":
                        # What the old code did: no spare, a full checkout.
                        clean(root / ".worktrees" / ".spare")
                        clean(root / ".git" / "git-sidecar-spare")
                    s, _ = procs.measure(self.one_time(root), env=sidecar_env(), split=False)
                    if link_target(root) != sha:
                        raise RuntimeError("one-time run did not publish the new commit")
                    (reuse if kind == "reuse" else full).append(s)
                    to_publish, whole, _, _ = way.sync()
                    emu.append(whole)
                    f, _ = procs.measure(["git", "-C", str(clone), "fetch", "-q", "--depth", "1", "origin"],
                                         env=self.ctx.git_env, split=False)
                    c, _ = procs.measure(["git", "-C", str(clone), "checkout", "-q", "--detach", "FETCH_HEAD"],
                                         env=self.ctx.git_env, split=False)
                    git.append(Sample.combine([f, c]))
            floor = self.stat_floor(root / ".worktrees" / ".spare")
            try:
                budget = self.both_ends_cpu(root)
            except Exception as e:  # noqa: BLE001 - its row says it failed; the target's row stands
                budget = e
        finally:
            clean(root)
            clean(clone)
            clean(self.tmpfs / "t-ot-emu")
        r, fu = med([x.wall for x in reuse]), med([x.wall for x in full])
        self.rows.append(Row(
            f"`--one-time` publish of a 1-file change on an existing root ({self.up.file_count()} files, tmpfs), "
            "wall of the whole run", "≤ 10% of a full checkout's",
            f"{r:.3f} s with the spare vs {fu:.3f} s with a full checkout (no spare): {r / fu * 100:.0f}%",
            f"fetch + checkout in a clone: {med([x.wall for x in git]):.3f} s",
            f"{med([x.wall for x in emu]):.3f} s (whole pass with gc); git-sync itself: 2.2 s ({ISSUE})",
            verdict(r <= 0.1 * fu, f"{r / fu * 100:.0f}% of a full checkout")))
        self.rows.append(self.both_ends_row(budget, fu))
        wall, cpu, files, threads = floor
        self.rows.append(Row(
            f"The floor of the spare's check: `lstat` of each of its {files} files, nothing else "
            f"(`bench/statwalk.rs`, {threads} threads, idle machine)", "reported",
            f"{wall * 1000:.1f} ms wall, {cpu * 1000:.1f} ms CPU: {wall / fu * 100:.1f}% of the full checkout above "
            f"before anything else the run does", "–", "–", "reported"))

    def both_ends_row(self, budget, full):
        """The row of `both_ends_cpu`'s figures against the goal (10% of `full` s), or the error it raised."""
        name = "CPU of the same `--one-time` publish at both ends, and the steps after the walk"
        if isinstance(budget, Exception):
            return Row(name, "reported", f"failed: {budget}", "–", "–", "reported")
        client, server, runs, laps = budget
        cores = len(os.sched_getaffinity(0))
        tail = sum(laps.get(k, 0.0) for k in ("plan", "checkout", "submodules", "install", "build", "publish",
                                                "upkeep"))
        return Row(
            f"{name} ({runs} runs; server and client on the same {cores} cores)", "reported",
            f"git-sidecar {client * 1000:.0f} ms, the server (git daemon, upload-pack, pack-objects) "
            f"{server * 1000:.0f} ms (means): {(client + server) * 1000:.0f} ms of CPU, which {cores} cores need "
            f"at least {(client + server) / cores * 1000:.0f} ms of wall for with all of them busy throughout; "
            f"the 10% goal is {full * 100:.0f} ms. After the fetch and the spare's walk, {tail:.0f} ms run one "
            f"step after another on one thread (plan {laps.get('plan', 0):.1f}, rewrite "
            f"{laps.get('checkout', 0):.1f}, upkeep {laps.get('upkeep', 0):.1f} ms: the pass timings of one more "
            f"run at `-v 1`)", "–", "–", "reported")

    def both_ends_cpu(self, root, runs=20):
        """(client CPU s, server CPU s, runs, laps): the means of `runs` `--one-time` 1-file publishes on `root`
        (which has a spare), the client's from wait4, the server's from the daemon's reaped children (to the
        clock tick, hence over all runs), and `pass_laps` of one more."""
        client = 0.0
        before = self.ctx.daemon.cpu_seconds()
        for _ in range(runs):
            sha = self.up.commit_changes(1, "one-time")  # git on the bare repository: not through the daemon
            s, _ = procs.measure(self.one_time(root), env=sidecar_env(), split=False)
            if link_target(root) != sha:
                raise RuntimeError("one-time run did not publish the new commit")
            client += s.cpu
        server = self.ctx.daemon.cpu_seconds() - before
        return client / runs, server / runs, runs, self.pass_laps(root)

    def pass_laps(self, root):
        """{lap: ms} of the pass timings one more `--one-time` 1-file publish on `root` logs at `-v 1`."""
        self.up.commit_changes(1, "one-time")
        run = subprocess.run([*self.one_time(root), "-v", "1"], env=sidecar_env(), capture_output=True, text=True,
                             timeout=120)
        found = re.findall(r'"laps":"([^"]*)"', run.stderr)
        if run.returncode != 0 or not found:
            raise RuntimeError(f"no pass timings from a one-time run at -v 1 (exit {run.returncode})")
        return {name: float(ms) for name, ms in re.findall(r"(\w+)=([0-9.]+)ms", found[-1])}

    def stat_floor(self, tree):
        """(wall s, CPU s, files, threads): the median of `bench/statwalk.rs`'s three rounds over `tree`."""
        tool = procs.build_rust(Path(__file__).resolve().parent / "statwalk.rs", procs.launcher().parent)
        threads = min(len(os.sched_getaffinity(0)), 8)  # as git-sidecar's walk: at most 8
        out = procs.output([str(tool), str(tree), str(threads)]).split()
        wall_us, cpu_us, files = map(int, out)
        if files == 0:
            raise RuntimeError(f"statwalk found no files below {tree}")
        return wall_us / 1e6, cpu_us / 1e6, files, threads

    # -- compaction --
    def compaction(self):
        self.log("compaction of 16 packs ...")
        root = self.tmpfs / "t-gc"
        clean(root)
        way = GitWay(self.tmpfs / "t-gc-emu", self.url, self.ctx.git_env)
        try:
            procs.measure(self.one_time(root, extra=("--git-gc", "off")), env=sidecar_env())
            way.init()
            way.sync()
            for _ in range(15):
                self.up.commit_changes(1, "compaction")
                procs.measure(self.one_time(root, extra=("--git-gc", "off")), env=sidecar_env())
                way.fetch()  # packs pile up as they would between git-sync's gc runs
                way.git("reset", "--soft", "FETCH_HEAD")
            packs = len(list((root / ".git" / "objects" / "pack").glob("*.pack")))
            base, _ = procs.measure(self.one_time(root, extra=("--git-gc", "off")), env=sidecar_env())
            gc, _ = procs.measure(self.one_time(root, extra=("--git-gc", "aggressive")), env=sidecar_env())
            after = len(list((root / ".git" / "objects" / "pack").glob("*.pack")))
            emu_packs = len(list((way.root / ".git" / "objects" / "pack").glob("*.pack")))
            loose = sum(1 for d in (way.root / ".git" / "objects").glob("[0-9a-f][0-9a-f]") for _ in d.iterdir())
            g, _ = way.git("gc", "--quiet")
            # The default mode at 16 packs: the small ones merged, the largest left.
            for _ in range(15):
                self.up.commit_changes(1, "compaction")
                procs.measure(self.one_time(root, extra=("--git-gc", "off")), env=sidecar_env())
            merge_packs = len(list((root / ".git" / "objects" / "pack").glob("*.pack")))
            merge, _ = procs.measure(self.one_time(root), env=sidecar_env())
            merged = len(list((root / ".git" / "objects" / "pack").glob("*.pack")))
        finally:
            clean(root)
            clean(self.tmpfs / "t-gc-emu")
        self.rows.append(Row(
            f"Compaction of {packs} packs into {after} (`--git-gc=aggressive` one-time run, no change, tmpfs)",
            "bounded, reported",
            f"{gc.cpu:.2f} s CPU, peak {peak_text([gc])} (shmem: packs mapped from tmpfs); the same run with "
            f"`--git-gc=off`: {base.cpu:.2f} s, {peak_text([base])}",
            "–", f"`git gc` (what git-sync runs after each change) of {emu_packs} packs and {loose} loose objects "
            f"(fetches of fewer than 100 objects are unpacked): {g.cpu:.2f} s CPU, peak {peak_text([g])}",
            "reported (the issue's figure: 2.5 s CPU, 68 MiB for 16 packs)"))
        self.rows.append(Row(
            f"Upkeep at {merge_packs} packs with the default `--git-gc` (the small packs merged into one "
            f"beside the largest: {merged} packs after; one-time run, no change, tmpfs)",
            "bounded, reported",
            f"{merge.cpu:.2f} s CPU for the whole run, peak {peak_text([merge])}",
            "–", "–", "reported"))


def render(rows):
    lines = ["| target | goal | git-sidecar | git CLI | git-sync v4.7.1 emulation (git CLI) | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r.cells) + " |")
    return "\n".join(lines)
