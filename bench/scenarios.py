"""The benchmark scenarios: git-sidecar against the git CLI doing the same job.

Each scenario records raw samples into `report.Results`; nothing here judges a
number. The git CLI baseline is an EMULATION of git-sync v4.7.1's loop (see
`GitWay`: the git commands git-sync runs per pass, each a separate process
whose CPU is summed and whose peak RSS is the max), not git-sync itself.
"""

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import procs
from procs import Sample
from servers import ByteRelay
from sidecar import Running, link_target, one_time_cmd, sidecar_env, wait_link

SIDECAR = "git-sidecar"
GIT_SYNC_WAY = "git-sync v4.7.1 emulation (git CLI)"
GIT_CHECKOUT = "checkout steps alone (worktree add + reset --hard)"
GIT_CLONE = "git clone --depth 1"
GIT_POLL = "git-sync v4.7.1 emulation, one poll (git CLI)"
PUBLISH_TIMEOUT = 900.0


@dataclass
class Context:
    binary: Path
    daemon: object
    upstream: object  # repogen.Upstream served as `repo_name`
    repo_name: str
    fs_dirs: dict  # "disk"/"tmpfs" -> Path of a scratch dir
    runs: int
    git_env: dict
    log_dir: Path
    log: object
    idle_seconds: float = 4.0
    extra_idle: list = field(default_factory=list)  # (label, url) of more repos for the idle poll
    mono_tip: str = ""  # tip of the partial-clone monorepo, when generated
    targets: object = None  # targets.Targets, when the issue-16 targets are measured

    @property
    def url(self):
        return self.daemon.url(self.repo_name)

    def sidecar(self, root, period, url=None, name="sidecar"):
        return Running(self.binary, url or self.url, root, period, self.log_dir / f"{name}.log")


def clean(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


class GitWay:
    """An EMULATION of git-sync v4.7.1's sync loop with the git CLI (git-sync's
    binary is not available here: no Go toolchain able to build it).

    Emulated, following /work/shared/reference/git-sync-v4.md §2.1-§2.4 (the
    v4.2+ loop: no `ls-remote`, the fetch itself is the check; its
    negotiation offers the published commit, which `git reset --soft` made
    the root's HEAD, so an unchanged poll transfers a few hundred bytes):
    every pass runs `rev-parse --show-toplevel`, `fsck --connectivity-only`
    and `remote get-url origin` in the root, `fetch <url> HEAD --verbose
    --no-progress --prune --no-auto-gc --depth 1`, `rev-parse FETCH_HEAD^{}`;
    unchanged: `rev-parse HEAD` and `fsck --connectivity-only` in the
    worktree; changed (or the first sync): `reset --soft`, `worktree prune`,
    `worktree add --force --detach --no-checkout`, the `.git` file rewritten
    relative, `reset --hard`, `submodule update --init --recursive --depth 1`
    (run even without submodules, as git-sync does with its default
    `--submodules=recursive`), the `tmp-link` rename; then the clean-up of the
    old worktree: `rm -rf`, `worktree prune`, `reflog expire
    --expire-unreachable=all --all` and `gc` (the code's default `--git-gc`
    is `always`), with `gc.autoDetach=false` and `gc.pruneExpire=now`.
    Not emulated (so the real figures are somewhat higher): git-sync's own
    process (the issue measured ~11 ms CPU per poll on it), credential
    helpers (none configured here), its hooks, logging and metrics. Each git
    command is a separate process: CPU summed, peak RSS the largest.
    """

    CONFIG = {"gc.autoDetach": "false", "gc.pruneExpire": "now", "core.askPass": "true"}

    def __init__(self, root, url, env, split=True):
        """`split`: sample each git process's anonymous/file-backed memory (see `procs.measure`)."""
        self.root, self.url, self.split = Path(root), url, split
        self.env = dict(env)
        n = int(self.env.get("GIT_CONFIG_COUNT", "0"))
        for i, (k, v) in enumerate(self.CONFIG.items(), start=n):
            self.env[f"GIT_CONFIG_KEY_{i}"], self.env[f"GIT_CONFIG_VALUE_{i}"] = k, v
        self.env["GIT_CONFIG_COUNT"] = str(n + len(self.CONFIG))
        self.published = None
        self.synced_once = False

    def git(self, *args, cwd=None):
        return procs.measure(["git", "-C", str(cwd or self.root), *args], env=self.env, split=self.split)

    def init(self):
        """What git-sync does to an empty root: `git init -b git-sync` and the origin remote."""
        clean(self.root)
        self.root.mkdir(parents=True)
        steps = [self.git("init", "-q", "-b", "git-sync")[0], self.git("remote", "add", "origin", self.url)[0]]
        return Sample.combine(steps)

    def check_root(self):
        """Per pass: the root is its own repository, connected, with origin = the URL."""
        return [self.git("rev-parse", "--show-toplevel")[0],
                self.git("fsck", "--no-progress", "--connectivity-only")[0],
                self.git("remote", "get-url", "origin")[0]]

    def fetch(self):
        """The poll's fetch and `rev-parse FETCH_HEAD^{}`; returns (sample, sha)."""
        fetch, _ = self.git("fetch", self.url, "HEAD", "--verbose", "--no-progress", "--prune", "--no-auto-gc",
                            "--depth", "1")
        parse, sha = self.git("rev-parse", "FETCH_HEAD^{}")
        return Sample.combine([fetch, parse]), sha

    def verify_current(self):
        """Unchanged: the published worktree is non-empty, at its commit, connected."""
        wt = self.root / ".worktrees" / self.published
        if not any(wt.iterdir()):
            raise RuntimeError(f"emulation: {wt} is empty")
        return [self.git("rev-parse", "HEAD", cwd=wt)[0],
                self.git("fsck", "--no-progress", "--connectivity-only", cwd=wt)[0]]

    def checkout(self, sha):
        """`worktree add --no-checkout` + `reset --hard` of `sha`, submodules, link swap."""
        wt = self.root / ".worktrees" / sha
        clean(wt)
        steps = [self.git("worktree", "prune")[0],
                 self.git("worktree", "add", "--force", "--detach", str(wt), sha, "--no-checkout")[0]]
        (wt / ".git").write_text(f"gitdir: ../../.git/worktrees/{sha}\n")
        steps += [self.git("reset", "--hard", sha, cwd=wt)[0],
                  self.git("submodule", "update", "--init", "--recursive", "--depth", "1", cwd=wt)[0]]
        tmp = self.root / "tmp-link"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(f".worktrees/{sha}", tmp)
        os.rename(tmp, self.root / "site")
        return Sample.combine(steps)

    def remove_old(self, old):
        """git-sync's clean-up once something was deleted (`--git-gc=always`)."""
        t0 = time.perf_counter()
        shutil.rmtree(self.root / ".worktrees" / old)
        rm = Sample(wall=time.perf_counter() - t0, cpu=0.0, rss_kib=0)
        steps = [rm, self.git("worktree", "prune")[0],
                 self.git("reflog", "expire", "--expire-unreachable=all", "--all")[0], self.git("gc", "--quiet")[0]]
        return Sample.combine(steps)

    def poll(self):
        """One pass of the loop; returns (sample up to the publish or the no-op's end, sample of
        the whole pass, checkout sample or None, sha)."""
        steps = self.check_root()
        fetched, sha = self.fetch()
        steps.append(fetched)
        changed = sha != self.published
        if not changed:
            steps += self.verify_current()
        checkout = None
        if changed or not self.synced_once:
            steps.append(self.git("reset", "--soft", sha)[0])
        if changed:
            checkout = self.checkout(sha)
            steps.append(checkout)
        to_publish = Sample.combine(steps)
        whole = [to_publish]
        if changed and self.published:
            whole.append(self.remove_old(self.published))
        self.published, self.synced_once = sha, True
        return to_publish, Sample.combine(whole), checkout, sha

    def sync(self):
        return self.poll()


def _expect_link(root, sha, who):
    if link_target(root) != sha:
        raise RuntimeError(f"{who}: link in {root} points at {link_target(root)}, expected {sha}")


def initial_sync(ctx, res):
    ctx.log("initial sync ...")
    tip = ctx.upstream.tip
    for run in range(ctx.runs):
        for fs, base in ctx.fs_dirs.items():
            _initial_sidecar(ctx, res, fs, base / "init-sidecar", tip)
            _initial_git_way(ctx, res, fs, base / "init-git", tip)
            _initial_clone(ctx, res, fs, base / "init-clone")
        ctx.log(f"  run {run + 1}/{ctx.runs} done")


def _add(res, table, case, fs, tool, s):
    res.add(table, case, fs, tool, wall=s.wall, cpu=s.cpu, **memory(s))


def memory(s):
    """The peak RSS of Sample `s` and its sampled anonymous and file-backed parts, in MiB (None: not read)."""
    mib = lambda kib: None if kib is None else kib / 1024  # noqa: E731
    return {"rss": s.rss_kib / 1024, "anon": mib(s.anon_kib()), "file": mib(s.file_kib())}


def split_mib(status):
    """Anonymous and file-backed (disk or tmpfs) MiB of a procs.status_split reading or sampled peaks;
    (None, None) when there is none."""
    if not status:
        return None, None
    return status["RssAnon"] / 1024, (status["RssFile"] + status["RssShmem"]) / 1024


def _initial_sidecar(ctx, res, fs, root, tip):
    clean(root)
    sample, _ = procs.measure(one_time_cmd(ctx.binary, ctx.url, root), env=sidecar_env())
    _expect_link(root, tip, SIDECAR)
    _add(res, "initial", "", fs, SIDECAR, sample)
    clean(root)


def _initial_git_way(ctx, res, fs, root, tip):
    way = GitWay(root, ctx.url, ctx.git_env)
    init = way.init()
    to_publish, _, checkout, sha = way.sync()
    _expect_link(root, tip, GIT_SYNC_WAY)
    _add(res, "initial", "", fs, GIT_SYNC_WAY, Sample.combine([init, to_publish]))
    _add(res, "initial", "", fs, GIT_CHECKOUT, checkout)
    clean(root)


def _initial_clone(ctx, res, fs, root):
    clean(root)
    sample, _ = procs.measure(["git", "clone", "-q", "--depth", "1", ctx.url, str(root)], env=ctx.git_env)
    _add(res, "initial", "", fs, GIT_CLONE, sample)
    clean(root)


def publish(ctx, res):
    """Commits changing 1, 100 and half of the files, published by a running sidecar."""
    half = ctx.upstream.file_count() // 2
    cases = [("1 file", 1), ("100 files", 100), (f"half the tree ({half} files)", half)]
    ctx.log("publish: starting one sidecar and one git repository per filesystem ...")
    sidecars, ways = {}, {}
    try:
        for fs, base in ctx.fs_dirs.items():
            clean(base / "pub-sidecar")
            sidecars[fs] = ctx.sidecar(base / "pub-sidecar", "1h", name=f"publish-{fs}")
            ways[fs] = GitWay(base / "pub-git", ctx.url, ctx.git_env)
            ways[fs].init()
            ways[fs].sync()
        for sc in sidecars.values():
            sc.wait_published()
        for label, count in cases:
            for run in range(ctx.runs):
                sha = ctx.upstream.commit_changes(count, label)
                for fs in ctx.fs_dirs:
                    _publish_sidecar(res, label, fs, sidecars[fs], sha)
                    _publish_git(res, label, fs, ways[fs], sha)
                ctx.log(f"  {label}: run {run + 1}/{ctx.runs} done")
    finally:
        for sc in sidecars.values():
            sc.close()
        for fs, base in ctx.fs_dirs.items():
            clean(base / "pub-sidecar")
            clean(base / "pub-git")


def _publish_sidecar(res, label, fs, sc, sha):
    """Trigger → link at `sha` (wall); CPU and peak RSS until the sync is counted."""
    before = sc.syncs()
    procs.reset_peak_rss(sc.pid)
    cpu0 = procs.cpu_seconds(sc.pid)
    with procs.Sampler(sc.pid) as sampler:
        t0 = time.perf_counter()
        sc.trigger()
        wait_link(sc.root, sha, PUBLISH_TIMEOUT)
        wall = time.perf_counter() - t0
        sc.wait_syncs(before + 1, PUBLISH_TIMEOUT)
        total = time.perf_counter() - t0
    cpu = procs.cpu_seconds(sc.pid) - cpu0
    rss = procs.status_kib(sc.pid, "VmHWM") / 1024
    anon, file_ = split_mib(sampler.peaks)
    res.add("publish", label, fs, SIDECAR, wall=wall, total=total, cpu=cpu, rss=rss, anon=anon, file=file_)


def _publish_git(res, label, fs, way, sha):
    to_publish, whole, _, got = way.sync()
    if got != sha:
        raise RuntimeError(f"git fetched {got}, expected {sha}")
    res.add("publish", label, fs, GIT_SYNC_WAY, wall=to_publish.wall, total=whole.wall,
            cpu=whole.cpu, **memory(whole))


def snapshot(root):
    """(inode, mtime, size) of every entry under `root`, symlinks not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def changed_entries(before, after):
    """Entries created, deleted or modified between two snapshots."""
    keys = before.keys() | after.keys()
    return sum(1 for k in keys if before.get(k) != after.get(k))


def idle_poll(ctx, res):
    repos = [(f"{ctx.upstream.file_count()} files", ctx.url)] + ctx.extra_idle
    for label, url in repos:
        for fs, base in ctx.fs_dirs.items():
            ctx.log(f"idle poll: {label} on {fs} ...")
            _idle_sidecar(ctx, res, label, fs, base / "idle-sidecar", url)
            _idle_git(ctx, res, label, fs, base / "idle-git", url)


def _idle_sidecar(ctx, res, label, fs, root, url):
    clean(root)
    sc = ctx.sidecar(root, "100ms", url=url, name=f"idle-{fs}")
    try:
        sc.wait_published()
        after = procs.status_split_of_live(sc.pid)
        anon, file_ = split_mib(after)
        res.add("memory", label, fs, SIDECAR, rss_after_sync=after["VmRSS"] / 1024, anon_after_sync=anon,
                file_after_sync=file_)
        time.sleep(1.0)
        snap0, io0 = snapshot(root), procs.io_write_bytes(sc.pid)
        for _ in range(ctx.runs):
            procs.reset_peak_rss(sc.pid)
            with procs.Sampler(sc.pid) as sampler:
                window = _idle_window(sc, ctx.idle_seconds)
            anon, file_ = split_mib(sampler.peaks)
            res.add("idle", label, fs, SIDECAR, rss=procs.status_kib(sc.pid, "VmHWM") / 1024, anon=anon,
                    file=file_, **window)
        writes = procs.io_write_bytes(sc.pid) - io0
        res.add("idle-writes", label, fs, SIDECAR, changed=changed_entries(snap0, snapshot(root)),
                write_bytes=writes)
        idle = procs.status_split_of_live(sc.pid)
        anon, file_ = split_mib(idle)
        res.add("memory", label, fs, SIDECAR, rss_idle=idle["VmRSS"] / 1024, anon_idle=anon, file_idle=file_,
                threads=procs.threads(sc.pid), fds=procs.open_fds(sc.pid))
    finally:
        sc.close()
        clean(root)


def _idle_window(sc, seconds):
    """CPU and wall per no-op poll over `seconds` of idling."""
    m0, cpu0 = sc.metrics(), procs.cpu_seconds(sc.pid)
    time.sleep(seconds)
    m1, cpu1 = sc.metrics(), procs.cpu_seconds(sc.pid)
    key = 'git_sync_duration_seconds_{}{{status="noop"}}'
    polls = m1.get(key.format("count"), 0) - m0.get(key.format("count"), 0)
    if polls <= 0:
        raise RuntimeError("no no-op poll counted while idling")
    busy = m1.get(key.format("sum"), 0) - m0.get(key.format("sum"), 0)
    others = sum(m1.get(f'git_sync_count_total{{status="{s}"}}', 0) - m0.get(f'git_sync_count_total{{status="{s}"}}', 0)
                 for s in ("success", "error"))
    if others:
        raise RuntimeError(f"{others} non-idle syncs while idling")
    return {"cpu": (cpu1 - cpu0) / polls, "wall": busy / polls, "polls": polls}


def _idle_git(ctx, res, label, fs, root, url):
    way = GitWay(root, url, ctx.git_env)
    way.init()
    way.sync()
    snap0 = snapshot(root)
    for _ in range(ctx.runs):
        _, sample, _, _ = way.poll()
        res.add("idle", label, fs, GIT_POLL, cpu=sample.cpu, wall=sample.wall, **memory(sample))
    res.add("idle-writes", label, fs, GIT_POLL, changed=changed_entries(snap0, snapshot(root)) / ctx.runs)
    clean(root)


def bytes_per_poll(ctx, res):
    ctx.log("bytes per idle poll ...")
    relay = ByteRelay(ctx.daemon.port)
    base = next(iter(ctx.fs_dirs.values()))
    try:
        _bytes_sidecar(ctx, res, relay, base / "bytes-sidecar")
        _bytes_git(ctx, res, relay, base / "bytes-git")
    finally:
        relay.close()


def _bytes_sidecar(ctx, res, relay, root):
    clean(root)
    sc = ctx.sidecar(root, "100ms", url=relay.url(ctx.repo_name), name="bytes")
    try:
        sc.wait_published()
        time.sleep(0.5)
        for _ in range(ctx.runs):
            relay.reset()
            n0 = sc.syncs()
            time.sleep(ctx.idle_seconds)
            n1 = sc.syncs()
            sent, received, conns = relay.counts()
            polls = n1 - n0
            res.add("bytes", "", "", SIDECAR, sent=sent / polls, received=received / polls,
                    connections=conns / polls)
    finally:
        sc.close()
        clean(root)


def _bytes_git(ctx, res, relay, root):
    way = GitWay(root, relay.url(ctx.repo_name), ctx.git_env)
    way.init()
    way.sync()
    for _ in range(ctx.runs):
        relay.reset()
        way.poll()
        time.sleep(0.05)  # let the relay threads count the last bytes
        sent, received, conns = relay.counts()
        res.add("bytes", "", "", GIT_POLL, sent=sent, received=received, connections=conns)
    clean(root)


def webhook(ctx, res):
    """Push one changed file, deliver a signed GitHub push event, time until published."""
    ctx.log("webhook to published ...")
    sidecars = {}
    try:
        for fs, base in ctx.fs_dirs.items():
            clean(base / "hook-sidecar")
            sidecars[fs] = ctx.sidecar(base / "hook-sidecar", "1h", name=f"webhook-{fs}")
        for sc in sidecars.values():
            sc.wait_published()
        for _ in range(ctx.runs):
            sha = ctx.upstream.commit_changes(1, "webhook")
            for fs, sc in sidecars.items():
                before = sc.syncs()
                t0 = time.perf_counter()
                sc.github_push(sha, ctx.url)
                wait_link(sc.root, sha, PUBLISH_TIMEOUT)
                res.add("webhook", "1 file", fs, SIDECAR, wall=time.perf_counter() - t0)
                sc.wait_syncs(before + 1, PUBLISH_TIMEOUT)
    finally:
        for fs, sc in sidecars.items():
            sc.close()
            clean(ctx.fs_dirs[fs] / "hook-sidecar")


def disk_usage(root):
    """Bytes allocated under `root` (st_blocks), each inode once (worktrees may share files
    through hard links), symlinks not followed."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue  # removed while walking (a staging dir renamed, a worktree deleted)
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


# Names under `<root>/.worktrees` of a checkout being written or of a tree being deleted
# (src/publish.rs): a disk reading while one exists counts a tree half-written or half-gone.
_BUSY_PREFIXES = (".staging-", ".trash-")


def _worktrees_state(root):
    """(link target, sorted names under .worktrees) of `root`."""
    try:
        names = tuple(sorted(os.listdir(os.path.join(root, ".worktrees"))))
    except FileNotFoundError:
        names = ()
    return link_target(root), names


def _quiet(state, tip):
    link, names = state
    return link == tip and not any(n.startswith(_BUSY_PREFIXES) for n in names)


def quiet_disk_usage(sc, tip, timeout=120.0):
    """`disk_usage` of the root at a quiet point, or None if none came within `timeout`.

    Quiet: `tip` (the upstream's latest commit) is published, the pass that
    published it and the one after it are counted (so its clean-up is over),
    no `.staging-*` or `.trash-*` exists under .worktrees, and neither the
    link nor the names under .worktrees changed while the tree was walked. A
    walk that overlapped a write is thrown away and taken again. Nothing else
    writes to the root while the soak waits here: the next commit comes after.
    """
    deadline = time.monotonic() + timeout
    while link_target(sc.root) != tip:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)
    try:
        sc.wait_syncs(sc.syncs() + 2, timeout=max(1.0, deadline - time.monotonic()))
    except TimeoutError:
        return None
    while time.monotonic() < deadline:
        before = _worktrees_state(sc.root)
        if _quiet(before, tip):
            used = disk_usage(sc.root)
            if _worktrees_state(sc.root) == before:
                return used
        time.sleep(0.02)
    return None


def _soak_point(sc, passes, t0, tip, readings=5):
    """Figures at one point of the soak, once `tip` is published and its pass is
    over: disk at a quiet point (`quiet_disk_usage`; None if none came), then
    RSS, fds and threads. A poll in flight holds a socket and files open, so
    fds and threads are the fewest of a few readings 20 ms apart."""
    disk = quiet_disk_usage(sc, tip)
    seen = []
    for _ in range(readings):
        status = procs.status_split_of_live(sc.pid)
        seen.append((status["VmRSS"] / 1024, *split_mib(status), procs.open_fds(sc.pid), procs.threads(sc.pid)))
        time.sleep(0.02)
    rss, anon, file_, _, _ = max(seen)
    return {"passes": passes, "elapsed": time.monotonic() - t0, "rss": rss, "anon": anon, "file": file_,
            "fds": min(r[3] for r in seen), "threads": min(r[4] for r in seen),
            "disk": None if disk is None else disk / 2**20}


def soak(ctx, res, passes, commit_every=100, points=10):
    """`passes` sync passes at --period 10ms, a one-file commit every `commit_every`."""
    base = ctx.fs_dirs.get("tmpfs") or next(iter(ctx.fs_dirs.values()))
    root = base / "soak-sidecar"
    clean(root)
    ctx.log(f"soak: {passes} sync passes, a commit every {commit_every} ...")
    sc = ctx.sidecar(root, "10ms", name="soak")
    try:
        sc.wait_published()
        t0, start = time.monotonic(), sc.syncs()
        res.soak.append(_soak_point(sc, 0, t0, ctx.upstream.tip))
        next_commit, next_point = commit_every, passes / points
        while (done := sc.syncs() - start) < passes:
            if sc.proc.poll() is not None:
                raise RuntimeError(f"git-sidecar exited during the soak with {sc.proc.returncode}")
            if done >= next_commit:
                ctx.upstream.commit_changes(1, "soak")
                next_commit += commit_every
            if done >= next_point:
                res.soak.append(_soak_point(sc, int(done), t0, ctx.upstream.tip))
                ctx.log(f"  {int(done)}/{passes} passes")
                next_point += passes / points
            time.sleep(0.02)
        res.soak.append(_soak_point(sc, int(sc.syncs() - start), t0, ctx.upstream.tip))
        res.soak_errors = int(sc.sync_counts()["error"])
    finally:
        sc.close()
        clean(root)


PARTIAL_PATTERNS = "/*\n!/*/\n/services/web/\n"
SIDECAR_SPARSE = "git-sidecar, sparse"
SIDECAR_FILTERED = "git-sidecar, sparse + --filter=blob:none"
GIT_SPARSE = "git clone --depth 1 --no-checkout + sparse-checkout (non-cone)"
GIT_FILTERED = "git clone --depth 1 --filter=blob:none --no-checkout + sparse-checkout (non-cone)"


def partial_clone(ctx, res, name, tip):
    """Empty root to a published sparse tree of the monorepo `name`, with and
    without `--filter=blob:none`, next to the git CLI doing the same; bytes
    counted by a relay in front of git daemon."""
    ctx.log("partial clone: sparse with and without --filter=blob:none ...")
    relay = ByteRelay(ctx.daemon.port)
    base = next(iter(ctx.fs_dirs.values()))
    patterns = base / "partial-patterns"
    patterns.write_text(PARTIAL_PATTERNS)
    try:
        for _ in range(ctx.runs):
            for label, extra in ((SIDECAR_SPARSE, []), (SIDECAR_FILTERED, ["--filter=blob:none"])):
                cmd = one_time_cmd(ctx.binary, relay.url(name), base / "partial-sidecar")
                _partial_run(res, relay, base / "partial-sidecar", label,
                             lambda: procs.measure([*cmd, "--sparse-checkout-file", str(patterns), *extra],
                                                   env=sidecar_env()), tip)
            for label, extra in ((GIT_SPARSE, []), (GIT_FILTERED, ["--filter=blob:none"])):
                _partial_run(res, relay, base / "partial-git", label,
                             lambda: _git_sparse_clone(ctx, relay.url(name), base / "partial-git", extra), None)
    finally:
        relay.close()


def _partial_run(res, relay, root, label, run, tip):
    clean(root)
    relay.reset()
    sample, _ = run()
    time.sleep(0.05)  # let the relay threads count the last bytes
    _, received, conns = relay.counts()
    if tip:
        _expect_link(root, tip, label)
    res.add("partial", "", "", label, wall=sample.wall, cpu=sample.cpu, **memory(sample),
            received=received, connections=conns)
    clean(root)


def _git_sparse_clone(ctx, url, root, extra):
    """git's way to the same tree: clone without checkout, non-cone patterns, checkout."""
    git = lambda *args: procs.measure(["git", "-C", str(root), *args], env=ctx.git_env)  # noqa: E731
    clone, _ = procs.measure(["git", "clone", "-q", "--depth", "1", *extra, "--no-checkout", url, str(root)],
                             env=ctx.git_env)
    steps = [clone, git("sparse-checkout", "set", "--no-cone", *PARTIAL_PATTERNS.split())[0],
             git("checkout", "-q", "HEAD")[0]]
    return Sample.combine(steps), None
