"""Turns raw benchmark samples into Markdown: machine header, tables, targets.

Owns the sample store (`Results`), the statistics (median and min–max), the
description of the machine, and stating each target as a plain fact (met or
not met) — never a pass/fail exit.
"""

import os
import platform
import statistics
import subprocess
import time
from collections import defaultdict

from scenarios import GIT_CHECKOUT, GIT_SYNC_WAY, SIDECAR

MIB = 1024 * 1024


class Results:
    """Samples keyed by (table, case, fs, tool) -> metric -> list of values."""

    def __init__(self):
        self.data = defaultdict(lambda: defaultdict(list))
        self.soak = []
        self.soak_errors = None
        self.targets = []  # targets.Row of issue 16, in order

    def add(self, table, case, fs, tool, **metrics):
        """Records one run's figures; None (not measured, e.g. a memory split
        no reading caught) is left out, so the table shows "–" rather than 0."""
        for k, v in metrics.items():
            if v is not None:
                self.data[(table, case, fs, tool)][k].append(v)

    def values(self, table, case, fs, tool, metric):
        return self.data.get((table, case, fs, tool), {}).get(metric, [])

    def median(self, table, case, fs, tool, metric):
        v = self.values(table, case, fs, tool, metric)
        return statistics.median(v) if v else None

    def keys(self, table):
        return [k for k in self.data if k[0] == table]


def spread(values, fmt):
    """`median (min–max)` of `values`, each formatted by `fmt`."""
    if not values:
        return "–"
    med = fmt(statistics.median(values))
    if len(values) == 1 or min(values) == max(values):
        return med
    return f"{med} ({fmt(min(values))}–{fmt(max(values))})"


def secs(v):
    return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"


def msecs(v):
    return f"{v * 1000:.2f} ms" if v < 0.01 else f"{v * 1000:.1f} ms"


def mib(v):
    return f"{v:.1f} MiB"


def count(v):
    return f"{v:g}" if v == int(v) else f"{v:.1f}"


def nbytes(v):
    return f"{v:,.0f} B"


def table(res, name, columns, first=("case", "fs", "tool")):
    """A Markdown table of every (case, fs, tool) of table `name`."""
    heads = {"case": "case", "fs": "filesystem", "tool": "tool"}
    keys = res.keys(name)
    shown = [f for f in first if any(k[("case", "fs", "tool").index(f) + 1] for k in keys)]
    lines = ["| " + " | ".join([heads[f] for f in shown] + [c[1] for c in columns]) + " |",
             "|" + "---|" * (len(shown) + len(columns))]
    for key in keys:
        cells = [key[("case", "fs", "tool").index(f) + 1] for f in shown]
        cells += [spread(res.data[key].get(metric, []), fmt) for metric, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "not found"


def _cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory():
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    return f"{kib / 1024 / 1024:.1f} GiB"


def _fs_type(path):
    """Type of the filesystem holding `path`: the longest mount point prefix in /proc/mounts."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            _, mount, fstype = line.split()[:3]
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, fstype
    return kind


def _sidecar_line(repo_dir, binary, built):
    commit = _run(["git", "-C", str(repo_dir), "rev-parse", "--short=12", "HEAD"])
    dirty = _run(["git", "-C", str(repo_dir), "status", "--porcelain", "--untracked-files=no"])
    size = os.path.getsize(binary) / MIB
    if built:
        origin = f"{built}, built from commit {commit}{' with uncommitted changes' if dirty else ''}"
    else:
        origin = f"given with --bin (harness at commit {commit}; the binary's own commit is not recorded)"
    return f"- git-sidecar: `{binary}` ({size:.1f} MiB), {origin}"


def machine(repo_dir, fs_dirs, binary, built, generated):
    """Lines describing what the numbers were measured on."""
    lines = [
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores; memory {_memory()}",
        f"- Kernel: {platform.system()} {platform.release()}",
        _sidecar_line(repo_dir, binary, built),
        f"- {_run(['git', '--version'])}; {_run(['rustc', '--version']) or 'rustc: not found'}",
        f"- Python {platform.python_version()}",
    ]
    for fs, path in fs_dirs.items():
        lines.append(f"- {fs}: `{path}` ({_fs_type(path)})")
    lines.append(f"- Repository: {generated}")
    return lines


# The anonymous and file-backed (on disk or tmpfs) peaks are sampled every 5 ms (`procs.Sampler`) in the process
# whose sampled RSS was largest: lower bounds, each kind's own peak (not necessarily at the same moment, so they
# may add up to more than the peak RSS, which is exact).
MEMORY = [("rss", "peak RSS", mib), ("anon", "anon peak", mib), ("file", "file-backed peak", mib)]
MEMORY_NOTE = (" Peak RSS is exact (wait4's ru_maxrss; VmHWM for a running git-sidecar); the anon and file-backed "
               "(disk or tmpfs) peaks are sampled every 5 ms in the process whose sampled RSS was largest: lower "
               "bounds, each kind's own peak, so the two may add up to more than the peak RSS.")
WALL_CPU_RSS = [("wall", "wall", secs), ("cpu", "CPU (user+sys)", secs)] + MEMORY


def sections(res):
    """(title, explanation, table) for every scenario that has samples."""
    out = []

    def add(title, note, name, columns, first=("case", "fs", "tool")):
        if res.keys(name):
            note += MEMORY_NOTE if any(c[0] == "anon" for c in columns) else ""
            out.append((title, note, table(res, name, columns, first)))

    add("Initial sync", "Empty root to published tree. git CLI: the git-sync v4.7.1 emulation's first pass (`git init -b "
        "git-sync`, `remote add`, the root checks, `fetch --depth 1`, `rev-parse FETCH_HEAD^{}`, `reset --soft`, "
        "`worktree add --no-checkout`, `reset --hard`, `submodule update`; separate processes: CPU summed, RSS "
        "max); its checkout steps alone are shown on their own row.", "initial", WALL_CPU_RSS)
    add("Publish a new commit", "A running git-sidecar (`--period 1h`) triggered by `POST /sync`: wall = trigger "
        "until the link points at the new commit (readlink polled every 1 ms); CPU (from /proc/PID/stat, 10 ms "
        "ticks) and peak RSS (VmHWM reset before each run) until the pass is counted in `/metrics`, "
        "old-worktree deletion included. git CLI: one pass of the git-sync v4.7.1 emulation (wall to the link "
        "swap), plus its clean-up: `rm -rf` of the old worktree, `worktree prune`, `reflog expire`, `gc` (CPU, "
        "total).", "publish",
        [("wall", "wall to published", secs), ("total", "wall, whole pass", secs)] + WALL_CPU_RSS[1:])
    add("Idle poll (nothing changed)", "git-sidecar at `--period 100ms`: CPU per no-op poll over windows of "
        "idling (CPU delta / polls counted in `/metrics`), wall = `git_sync_duration_seconds` per no-op poll. "
        "Peak RSS: VmHWM, reset before each window. git CLI: one pass of the git-sync v4.7.1 emulation (see "
        "`GitWay`): `rev-parse --show-toplevel`, `fsck --connectivity-only`, `remote get-url`, `fetch --depth 1` "
        "(which offers the published commit as a `have`, so the server sends an empty pack), `rev-parse "
        "FETCH_HEAD^{}`, then `rev-parse HEAD` and `fsck --connectivity-only` in the worktree: separate processes, "
        "CPU summed, RSS the max. git-sync's own process is not included.", "idle",
        [("cpu", "CPU per poll", msecs), ("wall", "wall per poll", msecs)] + MEMORY +
        [("polls", "polls per window", count)])
    add("Writes while idle", "Entries under the root created, changed or deleted (path, inode, mtime, size) over "
        "the whole idle period (git CLI: per fetch), and `write_bytes` from /proc/PID/io (block-device "
        "writes; always 0 on tmpfs).", "idle-writes",
        [("changed", "changed entries", count), ("write_bytes", "write_bytes", nbytes)])
    add("Bytes exchanged per idle poll", "Counted by a TCP relay on 127.0.0.1 in front of git daemon.", "bytes",
        [("sent", "client → server", nbytes), ("received", "server → client", nbytes),
         ("connections", "connections", count)])
    add("Partial clone (`--filter=blob:none`) with a sparse checkout", "Empty root to a published sparse tree "
        "(a few hundred files) of a monorepo-shaped repository: tens of thousands of small files and large "
        "incompressible blobs outside the cone. Bytes counted by a TCP relay in front of git daemon (the git "
        "CLI's lazy fetches of the cone's blobs included). git CLI: `git clone --depth 1 [--filter=blob:none] "
        "--no-checkout`, `git sparse-checkout set --no-cone`, `git checkout` (CPU summed, RSS max).", "partial",
        WALL_CPU_RSS + [("received", "server → client", nbytes), ("connections", "connections", count)])
    add("Webhook to published", "git-sidecar with `--period 1h`: a commit changing one file is pushed, then a "
        "GitHub push event signed with `X-Hub-Signature-256` is POSTed; wall until the link points at it. "
        "(The git CLI has no webhook; its cost for the same commit is the publish table's 1-file row.)",
        "webhook", [("wall", "push event to published", msecs)])
    add("Signature verification per publish (`--verify-signatures=head`)", "A running git-sidecar publishing "
        "commits signed by `git commit -S` (an ssh-keygen ed25519 key; a gpg ed25519 key), with "
        "`--verify-committers`: the `verify` lap of each publishing pass from its pass timings at `-v 1` (key "
        "files read, payload split, signature checked; hundredths of a ms). git CLI: `git verify-commit` on the "
        "same commit, the whole process (it runs ssh-keygen or gpg). Target: under 2 ms for SSH ed25519.",
        "verify", [("wall", "time per commit", msecs)])
    add("Resident memory", "VmRSS of the idle-poll sidecars right after the first publish and after idling.",
        "memory", [("rss_after_sync", "RSS after first sync", mib), ("anon_after_sync", "of it anon", mib),
                   ("file_after_sync", "of it file-backed", mib), ("rss_idle", "RSS idle", mib),
                   ("anon_idle", "of it anon", mib), ("file_idle", "of it file-backed", mib),
                   ("threads", "threads", count), ("fds", "open fds", count)])
    return out


def soak_table(res):
    lines = ["| passes | elapsed | RSS (max of 5 readings) | of it anon | of it file-backed | open fds (min) | "
             "threads (min) | disk used by root (quiet reading) |", "|---|---|---|---|---|---|---|---|"]
    for p in res.soak:
        disk = "no quiet point" if p["disk"] is None else mib(p["disk"])
        lines.append(f"| {p['passes']} | {p['elapsed']:.0f} s | {mib(p['rss'])} | {mib(p['anon'])} | "
                     f"{mib(p['file'])} | {p['fds']} | {p['threads']} | {disk} |")
    return "\n".join(lines)


SOAK_NOTE = ("git-sidecar at `--period 10ms`, a one-file commit every 100 passes. Disk is read at a quiet point "
             "(`scenarios.quiet_disk_usage`): the latest commit published, the pass that published it and the next "
             "one counted, no `.staging-*` or `.trash-*` under `.worktrees`, and the link and `.worktrees` unchanged "
             "across the walk (a walk that overlapped a write is taken again). RSS, fds and threads are read at the same "
             "point, just after the walk.")


def _verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def _pct(a, b):
    return f"{100 * a / b:.1f}%" if a is not None and b else "–"


def _fmt(v, fmt):
    return "–" if v is None else fmt(v)


def target_initial(res, fs):
    m = lambda tool, metric: res.median("initial", "", fs, tool, metric)  # noqa: E731
    sw, gw, sr, gr = m(SIDECAR, "wall"), m(GIT_SYNC_WAY, "wall"), m(SIDECAR, "rss"), m(GIT_SYNC_WAY, "rss")
    ok = None if None in (sw, gw, sr, gr) else sw < gw and sr < gr
    return (f"Initial sync faster than the git CLI, with lower peak RSS ({fs}): git-sidecar "
            f"{_fmt(sw, secs)} and {_fmt(sr, mib)} vs the git-sync emulation {_fmt(gw, secs)} and {_fmt(gr, mib)}: {_verdict(ok)}")


def target_small_publish(res, fs):
    one = lambda metric: res.median("publish", "1 file", fs, SIDECAR, metric)  # noqa: E731
    full = lambda metric: res.median("initial", "", fs, SIDECAR, metric)  # noqa: E731
    checkout = res.median("initial", "", fs, GIT_CHECKOUT, "cpu")
    ratios = [one(m) / full(m) for m in ("cpu", "wall") if one(m) is not None and full(m)]
    ok = None if len(ratios) < 2 else max(ratios) <= 0.05
    return (f"Publishing a one-file commit costs at most 5% of a full checkout ({fs}): CPU "
            f"{_pct(one('cpu'), full('cpu'))} and wall {_pct(one('wall'), full('wall'))} of git-sidecar's "
            f"initial sync (fetch + full checkout); CPU {_pct(one('cpu'), checkout)} of the git-sync emulation's checkout steps "
            f"alone: {_verdict(ok)}")


def target_idle(res, fs, labels):
    cpus = {label: res.median("idle", label, fs, SIDECAR, "cpu") for label in labels}
    changed = [res.median("idle-writes", label, fs, SIDECAR, "changed") for label in labels]
    written = [res.median("idle-writes", label, fs, SIDECAR, "write_bytes") for label in labels]
    known = [c for c in cpus.values() if c is not None]
    ok = None if not known else max(known) < 0.005 and not any(changed) and not any(written)
    per_size = ", ".join(f"{_fmt(c, msecs)} ({label})" for label, c in cpus.items())
    return (f"A poll where nothing changed: under 5 ms CPU independent of size, no writes ({fs}): "
            f"CPU per poll {per_size}; entries changed {changed}, write_bytes {written}: {_verdict(ok)}")


def target_idle_rss(res, fs, label):
    rss = res.median("memory", label, fs, SIDECAR, "rss_idle")
    return (f"Idle resident memory under 10 MiB ({fs}, {label}): {_fmt(rss, mib)}: "
            f"{_verdict(None if rss is None else rss < 10)}")


SOAK_DISK_TOLERANCE = 0.10  # of the first half's largest quiet reading


def target_soak(res):
    """`soak_growth`'s text with its verdict."""
    text, ok = soak_growth(res)
    return f"{text}: {_verdict(ok)}"


def soak_growth(res):
    """(text, ok or None when not measured): growth between the two halves of the soak (after its first
    point, the first sync).

    Every point is read once the latest commit is published and its pass is
    over (`scenarios.quiet_disk_usage`). RSS is the largest of 5 readings, so
    a leak shows as a higher peak in the second half (max); a leaked fd or
    thread raises the floor (min), which a poll in flight at a reading does
    not. Disk is walked only while nothing is being written, so its readings
    are exact and a leaked tree or pack raises the largest of them.
    """
    points = res.soak[1:]
    if len(points) < 4:
        return "No growth over a soak of 10,000 syncs", None
    first, second = points[: len(points) // 2], points[len(points) // 2:]
    aggregate = {"rss": max, "anon": max, "file": max, "fds": min, "threads": min}
    growth = {k: agg(p[k] for p in second) - agg(p[k] for p in first) for k, agg in aggregate.items()}
    unread = [p["passes"] for p in points if p["disk"] is None]
    if unread:
        disk_ok, disk = False, f"unread at passes {unread} (for 120 s the link was not at the tip, or a .staging-/.trash- stayed)"
    else:
        base = max(p["disk"] for p in first)
        growth_disk = max(p["disk"] for p in second) - base
        disk_ok = growth_disk <= SOAK_DISK_TOLERANCE * base
        low, high = min(p["disk"] for p in points), max(p["disk"] for p in points)
        disk = f"{growth_disk:+.1f} MiB (quiet readings {low:.1f}–{high:.1f} MiB)"
    ok = (growth["rss"] <= 1.0 and growth["fds"] <= 0 and growth["threads"] <= 0 and disk_ok
          and not res.soak_errors)
    return (f"No growth over a soak of {res.soak[-1]['passes']} syncs (second half against first half: peak RSS "
            f"within +1 MiB; fewest fds and threads not up; largest quiet disk reading within "
            f"+{SOAK_DISK_TOLERANCE:.0%}; no failed sync): RSS {growth['rss']:+.1f} MiB (anon {growth['anon']:+.1f}, "
            f"file-backed {growth['file']:+.1f}), fds {growth['fds']:+d}, "
            f"threads {growth['threads']:+d}, disk {disk}, failed syncs {res.soak_errors}"), ok


def target_webhook(res, fs):
    wall = res.median("webhook", "1 file", fs, SIDECAR, "wall")
    return (f"Webhook to published, one changed file, under 300 ms ({fs}): {_fmt(wall, msecs)}: "
            f"{_verdict(None if wall is None else wall < 0.3)}")


def targets(res, fs, labels):
    lines = [target_initial(res, fs), target_small_publish(res, fs), target_idle(res, fs, labels),
             target_idle_rss(res, fs, labels[0]), target_soak(res), target_webhook(res, fs)]
    return [f"- {line}" for line in lines]


ISSUE16_NOTE = (
    "Medians of the runs, on the documentation corpus (see Notes). \"git-sync v4.7.1 emulation\" is NOT git-sync: "
    "its binary cannot be built here (no Go toolchain able to), so `bench/scenarios.py` `GitWay` runs the git "
    "commands git-sync v4.7.1 runs per pass (per the upstream source as summarised in the project's reference "
    "notes: fsck and rev-parse checks, a `--depth 1` fetch whose negotiation offers the published commit, and on "
    "a change `worktree add --no-checkout`, `reset --hard`, `submodule update`, the link swap, then `worktree "
    "prune`, `reflog expire` and `gc`). It leaves out git-sync's own process (about 11 ms CPU per poll as the "
    "issue measured it), credential helpers, hooks and logging, so git-sync's real figures are somewhat higher. "
    "Figures marked as from issue 16 were measured by its reporter on git-sync v4.7.1 itself, on their machine, "
    "and are quoted, not re-measured. Peak RSS is wait4's ru_maxrss (exact; for the git CLI the largest of its "
    "processes); the anonymous/file/shmem split of a peak is the largest RssAnon/RssFile/RssShmem read from "
    "/proc/PID/status every 5 ms (a lower bound). On tmpfs a mapped pack counts as RssShmem, not RssFile: it is "
    "page cache like a file's, only held in memory by tmpfs itself.")


def render(res, header, fs, labels, notes):
    """The whole Markdown document."""
    parts = ["# git-sidecar benchmarks", "", "Produced by `scripts/bench`. Medians over the runs, with min–max "
             "in parentheses.", "", "## Machine", "", *header, "", "## Targets", "",
             f"Judged on {fs} medians; these are facts, not a test result.", "", *targets(res, fs, labels)]
    if res.targets:
        import targets as issue16

        rows = list(res.targets)
        if res.soak:
            text, ok = soak_growth(res)
            rows.append(issue16.Row("Soak (on the main corpus)", "RSS, fds, threads, disk flat",
                                    text, "–", "–", _verdict(ok)))
        parts += ["", "## Issue 16 targets, side by side", "", ISSUE16_NOTE, "", issue16.render(rows)]
    for title, note, body in sections(res):
        parts += ["", f"## {title}", "", note, "", body]
    if res.soak:
        parts += ["", "## Soak", "", SOAK_NOTE, "", soak_table(res)]
    if notes:
        parts += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(parts) + "\n"
